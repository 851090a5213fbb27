"""OmniChat dialogue model: frozen experts -> Mix-Former -> LLM (LoRA) -> text + style tags.

``OmniChatModel(examples)`` returns the mean cross-entropy over the target tokens (response
text, style tags, ``<eot>``) of a batch of :class:`omni.omnichat.data.TurnExample`. The
experts' features of each audio segment are cached by the segment's ``cache_key`` while the
experts are frozen (they cannot change), so repeated epochs pay only for Mix-Former + LLM.
Features precomputed at data prep and carried by the segment (``Segment.features``, e.g. the
Whisper base content features stored in the shards) are used as they are: that expert never runs.

Decoding (``generate``) is greedy and style-constrained: text ids until the model emits a
``<pitch_*>`` tag, then exactly one ``<speed_*>`` and one ``<emotion_*>``, then ``<eot>``.

Export folder = an omni export of the LLM (LoRA merged; ``omni.model.save_export``) plus
``mixformer.safetensors``, ``experts.safetensors`` and ``omnichat.json``.
"""
from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from pathlib import Path

import torch
from torch import nn

from omni.config import OmniChatConfig
from omni.omnichat.data import Segment, TurnExample
from omni.omnichat.experts import build_experts, num_frames
from omni.omnichat.mixformer import MixFormer
from omni.omnichat.speakers import SpeakerNorm
from omni.vocab import STYLE_SPECIALS, Vocab

FAMILY = "omnichat"
log = logging.getLogger("omni.omnichat")


class OmniChatModel(nn.Module):
    def __init__(self, oc: OmniChatConfig, llm: nn.Module, vocab: Vocab, experts: nn.ModuleDict | None = None,
                 cache_size: int = 4096):
        super().__init__()
        self.oc, self.vocab, self.llm = oc, vocab, llm
        hidden = llm.get_input_embeddings().weight.shape[1]
        self.experts = (experts if experts is not None else build_experts(oc, oc.seed)) if oc.input == "audio" \
            else nn.ModuleDict()
        self.mixformer = MixFormer({n: e.dim for n, e in self.experts.items()},
                                   {n: e.frame_rate_hz for n, e in self.experts.items()}, hidden,
                                   fusion=oc.fusion, common_rate_hz=oc.common_frame_rate_hz,
                                   window=oc.window_frames, queries=oc.queries_per_window, dim=oc.qformer_dim,
                                   heads=oc.qformer_heads) if oc.input == "audio" else None
        self.speaker_norm = SpeakerNorm(oc.speaker_prior_frames) \
            if oc.input == "audio" and oc.para_norm == "speaker" and "para" in self.experts else None
        self._cache: OrderedDict = OrderedDict()
        self.cache_size = cache_size
        self.feature_counts: Counter = Counter()
        """``<expert>_precomputed`` / ``<expert>_encoded``: segments whose features came from the data
        vs from running the expert (cache hits count neither)."""
        self._warned_slow = False

    def train(self, mode: bool = True):
        super().train(mode)
        for e in self.experts.values():  # frozen experts stay in eval mode (no dropout)
            if getattr(e, "frozen", False):
                e.eval()
        return self

    # ----------------------------------------------------------------- features
    def expert_features(self, seg: Segment) -> dict[str, torch.Tensor]:
        """{expert: (frames, dim)}: precomputed features of the segment (``seg.features``, read
        from the shards) where present, else the expert runs; frozen experts' results are cached
        by ``cache_key``. ``feature_counts`` counts both kinds per expert."""
        frozen = all(getattr(e, "frozen", False) for e in self.experts.values())
        if frozen and seg.cache_key is not None and seg.cache_key in self._cache:
            self._cache.move_to_end(seg.cache_key)
            return self._cache[seg.cache_key]
        pre = seg.features or {}
        feats = {}
        for n, e in self.experts.items():
            if n in pre:
                f = pre[n]
                want = num_frames(len(seg.wave), e.frame_rate_hz) if seg.wave is not None else f.shape[0]
                if f.ndim != 2 or f.shape[1] != e.dim or f.shape[0] != want:
                    raise ValueError(f"precomputed {n} features of {seg.cache_key!r} have shape {tuple(f.shape)}, "
                                     f"expert {type(e).__name__} gives ({want}, {e.dim}): re-run data prep")
                feats[n] = f.float()
                self.feature_counts[f"{n}_precomputed"] += 1
            else:
                if getattr(e, "FEATURE_ID", None) and seg.cache_key is not None and not self._warned_slow:
                    # a data segment (live turns have no cache_key and are meant to be encoded)
                    self._warned_slow = True
                    log.warning("expert %s runs on the fly for %r (no precomputed features in the data): "
                                "~1 s per turn on CPU; prepare the data with omnichat.content_expert=whisper_base "
                                "to store them in the shards", type(e).__name__, seg.cache_key)
                feats[n] = e.features(seg.wave)
                self.feature_counts[f"{n}_encoded"] += 1
        if frozen and seg.cache_key is not None:
            self._cache[seg.cache_key] = feats
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return feats

    def observe(self, examples, pooled: bool = True) -> int:
        """``omnichat.para_norm: speaker``: add the audio turns of ``examples`` (TurnExamples or
        segment lists) to their speakers' statistics (and to the pooled ones when ``pooled``: training
        data only). Audio only, no labels. Returns the number of turns observed (0 without norm)."""
        if self.speaker_norm is None:
            return 0
        n = 0
        for ex in examples:
            for s in getattr(ex, "segments", ex):
                if s.kind == "audio":
                    self.speaker_norm.observe(self.expert_features(s)["para"], s.speaker, s.cache_key, pooled)
                    n += 1
        return n

    def normalised(self, seg: Segment) -> dict[str, torch.Tensor]:
        """The segment's expert features as the Mix-Former gets them (speaker-normalised prosody)."""
        f = self.expert_features(seg)
        if self.speaker_norm is None:
            return f
        return {**f, "para": self.speaker_norm(f["para"], seg.speaker)}

    def fuse(self, segs: list[Segment]) -> list[torch.Tensor]:
        """Mix-Former tokens (n_i, hidden) for each audio segment, batched in one forward."""
        if not segs:
            return []
        per = [self.normalised(s) for s in segs]
        dev = self.mixformer.proj[0].weight.device
        feats, lens = {}, {}
        for n in self.experts:
            xs = [p[n].to(dev) for p in per]
            lens[n] = torch.tensor([x.shape[0] for x in xs], device=dev)
            feats[n] = nn.utils.rnn.pad_sequence(xs, batch_first=True)
        tokens, mask = self.mixformer(feats, lens)
        return [tokens[i, mask[i]] for i in range(len(segs))]

    # -------------------------------------------------------------------- inputs
    def build_inputs(self, examples: list[list[Segment]], with_labels: bool = True):
        """Segments of each example -> (inputs_embeds (B,S,H), attention_mask (B,S), labels (B,S))."""
        emb = self.llm.get_input_embeddings()
        dev = self.llm.get_output_embeddings().weight.device
        audio = [s for ex in examples for s in ex if s.kind == "audio"]
        fused = iter(self.fuse(audio))
        rows, labels = [], []
        for ex in examples:
            parts, labs = [], []
            for s in ex:
                if s.kind == "audio":
                    t = next(fused)
                    parts.append(t)
                    labs.append(torch.full((t.shape[0],), -100, device=dev))
                else:
                    ids = torch.tensor(s.ids, dtype=torch.long, device=dev)
                    parts.append(emb(ids[None])[0])
                    labs.append(ids.clone() if s.loss else torch.full_like(ids, -100))
            rows.append(torch.cat(parts, 0))
            labels.append(torch.cat(labs, 0))
        lengths = torch.tensor([r.shape[0] for r in rows], device=dev)
        x = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        mask = torch.arange(x.shape[1], device=dev)[None] < lengths[:, None]
        y = nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=-100) if with_labels else None
        return x, mask.long(), y

    def forward(self, examples: list[TurnExample]):
        """Mean cross-entropy over the reply tokens; the style tags weigh ``omnichat.style_loss_weight``."""
        x, mask, y = self.build_inputs([e.segments for e in examples])
        logits = self.llm(inputs_embeds=x, attention_mask=mask).logits
        target = y[:, 1:].reshape(-1)
        ce = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), target,
                                         ignore_index=-100, reduction="none")
        w = (target != -100).float()
        if self.oc.style_loss_weight != 1.0:
            w = torch.where(torch.isin(target, self._style_ids(target.device)), w * self.oc.style_loss_weight, w)
        return (ce * w).sum() / w.sum().clamp(min=1.0)

    def _style_ids(self, device) -> torch.Tensor:
        return torch.tensor([self.vocab.special(n) for n in STYLE_SPECIALS], device=device)

    # -------------------------------------------------------------------- decode
    @torch.no_grad()
    def generate(self, prefix: list[Segment], max_new_tokens: int | None = None) -> list[int]:
        """Greedy, style-constrained continuation of ``prefix`` (ends with ``[assistant_text]``).

        ``style_position: after_text``: text ids until a ``<pitch_*>``, then one ``<speed_*>`` and one
        ``<emotion_*>`` (a text that reaches ``max_new_tokens`` is closed by forcing the tags).
        ``before_text``: one tag of each group first, then text ids until ``<eot>`` or
        ``max_new_tokens``. Returns the ids, ending with ``<eot>``."""
        v, max_new = self.vocab, max_new_tokens or self.oc.max_new_tokens
        size = self.llm.get_output_embeddings().weight.shape[0]

        def only(ids) -> torch.Tensor:
            m = torch.zeros(size, dtype=torch.bool)
            m[list(ids)] = True
            return m
        groups = {g: [v.special(f"{g}_{n}") for n in names] for g, names in
                  (("pitch", ("high", "normal", "low")), ("speed", ("fast", "normal", "slow")),
                   ("emotion", ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted")))}
        eot = v.special("eot")
        text_ids = range(v.text_size)
        tags_first = self.oc.style_position == "before_text"
        allowed = {"pitch": only(groups["pitch"]), "speed": only(groups["speed"]), "emotion": only(groups["emotion"]),
                   "text": only([*text_ids, eot] if tags_first else [*text_ids, *groups["pitch"]])}
        after = ({"pitch": "speed", "speed": "emotion", "emotion": "text"} if tags_first
                 else {"pitch": "speed", "speed": "emotion", "emotion": "done"})
        x, mask, _ = self.build_inputs([prefix], with_labels=False)
        out, phase, n_text = [], "pitch" if tags_first else "text", 0
        res = self.llm(inputs_embeds=x, attention_mask=mask, use_cache=True)
        while True:
            logits = res.logits[0, -1].float().cpu()
            ok = allowed[phase]
            if phase == "text" and n_text >= max_new:  # text budget spent: close the reply
                ok = only([eot]) if tags_first else allowed["pitch"]
            nxt = int(logits.masked_fill(~ok, float("-inf")).argmax())
            if nxt == eot:
                break
            out.append(nxt)
            if phase == "text":
                if nxt in groups["pitch"]:
                    phase = "speed"
                else:
                    n_text += 1
            else:
                phase = after[phase]
            if phase == "done":
                break
            mask = torch.cat([mask, mask.new_ones(1, 1)], 1)
            res = self.llm(input_ids=torch.tensor([[nxt]], device=mask.device), attention_mask=mask,
                           past_key_values=res.past_key_values, use_cache=True)
        return out + [eot]

    def trainable_summary(self) -> dict:
        def count(mod, trainable):
            return sum(p.numel() for p in mod.parameters() if p.requires_grad or not trainable)
        return {"mixformer_params": count(self.mixformer, False) if self.mixformer else 0,
                "expert_params": count(self.experts, False), "expert_trainable_params": count(self.experts, True),
                "llm_trainable_params": count(self.llm, True)}


# ---------------------------------------------------------------------------- build/save
def build_omnichat(cfg, vocab: Vocab, init_from: str | None = None) -> OmniChatModel:
    """From a full :class:`omni.config.Config`: LLM (``build_model``; LoRA per ``omnichat.lora``;
    weights of an earlier export when ``init_from``), experts, Mix-Former (seeded)."""
    from omni.model import build_model
    mcfg = cfg.model
    if init_from:
        mcfg = mcfg.model_copy(update={"backbone": "pretrained", "path": str(init_from)})
    llm = build_model(mcfg, vocab, lora=cfg.omnichat.lora)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.omnichat.seed)
        return OmniChatModel(cfg.omnichat, llm, vocab)


def save_omnichat(out_dir, model: OmniChatModel, text_tokenizer, speech_tokenizer_dir, config,
                  extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    from omni.model import save_export
    out = save_export(out_dir, model.llm, model.vocab, text_tokenizer, speech_tokenizer_dir, config,
                      {"family": FAMILY, **(extra or {})})
    if model.mixformer is not None:
        save_file({k: v.contiguous() for k, v in model.mixformer.state_dict().items()},
                  str(out / "mixformer.safetensors"))
        save_file({k: v.contiguous() for k, v in model.experts.state_dict().items()}, str(out / "experts.safetensors"))
    if model.speaker_norm is not None:  # pooled prosody statistics of the training speakers
        save_file({k: v.contiguous() for k, v in model.speaker_norm.state_dict().items()},
                  str(out / "speaker_norm.safetensors"))
    (out / "omnichat.json").write_text(json.dumps({"family": FAMILY, "omnichat": model.oc.model_dump(mode="json"),
                                                   "expert_weights": model.mixformer.expert_weights()
                                                   if model.mixformer is not None else {}}, indent=1))
    return out


def load_omnichat(export_dir) -> tuple[OmniChatModel, object]:
    """(model in eval mode, :class:`omni.model.Export`) from a folder written by :func:`save_omnichat`."""
    from safetensors.torch import load_file

    from omni.model import load_export
    d = Path(export_dir)
    if not (d / "omnichat.json").is_file():
        raise FileNotFoundError(f"{d} is not an OmniChat export (no omnichat.json): train with "
                                f"`python -m jobs.train --config configs/omnichat_tiny.yaml --stage omnichat`")
    meta = json.loads((d / "omnichat.json").read_text())
    oc = OmniChatConfig.model_validate(meta["omnichat"])
    exp = load_export(d)
    model = OmniChatModel(oc, exp.model, exp.vocab)
    if model.mixformer is not None:
        model.mixformer.load_state_dict(load_file(str(d / "mixformer.safetensors")))
        model.experts.load_state_dict(load_file(str(d / "experts.safetensors")))
    if model.speaker_norm is not None:
        model.speaker_norm.load_state_dict(load_file(str(d / "speaker_norm.safetensors")))
    model.eval()
    return model, exp
