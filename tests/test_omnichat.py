"""OmniChat: window Q-Former, Mix-Former, frozen experts + trained gates, α sampling, style
tags, turn examples, save/reload. Tiny models and a few espeak-voiced dialogues; no Ray."""
import json
import math

import numpy as np
import pytest
import torch

from omni.config import ConfigError, ModelConfig, OmniChatConfig
from omni.omnichat.data import Segment, alpha_weights, parse_response, style_tag_ids, turn_examples
from omni.omnichat.mixformer import MixFormer, WindowQFormer

torch.set_num_threads(1)
LLM = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, lora=True,
                  lora_rank=4)


# ------------------------------------------------------------------ window Q-Former
def test_window_qformer_shapes_and_masks_variable_length():
    torch.manual_seed(0)
    q = WindowQFormer(in_dim=6, dim=16, window=17, queries=1, heads=2).eval()
    lengths = torch.tensor([17, 18, 40])  # exact window, one frame into the 2nd, partial 3rd
    x = torch.randn(3, 40, 6)
    mask = torch.arange(40)[None] < lengths[:, None]
    h, wmask = q(x, mask)
    assert h.shape == (3, 3, 16)  # ceil(40 / 17) windows, K = 1
    assert wmask.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert torch.all(h[~wmask] == 0)  # windows without frames give zero vectors
    # padded frames never reach the output
    x2 = x.clone()
    x2[0, 17:] = 1e3
    x2[1, 18:] = -1e3
    h2, _ = q(x2, mask)
    assert torch.allclose(h, h2, atol=1e-6)
    # attention stays inside its window: a change in window 2 moves only window 2's vector
    x3 = x.clone()
    x3[2, 35] += 5.0  # frame 35 lies in the last (partial) window [34, 40)
    h3, _ = q(x3, mask)
    assert torch.allclose(h3[2, :2], h[2, :2], atol=1e-6) and not torch.allclose(h3[2, 2], h[2, 2])
    # K queries per window
    hk, wk = WindowQFormer(6, 16, window=17, queries=2, heads=2)(x, mask)
    assert hk.shape == (3, 6, 16) and wk.sum(1).tolist() == [2, 4, 6]


@pytest.mark.parametrize("fusion", ["mixformer", "concat"])
def test_mixformer_aligns_rates_and_counts_tokens(fusion):
    torch.manual_seed(0)
    m = MixFormer({"a": 8, "b": 4}, {"a": 50.0, "b": 10.0}, hidden_size=24, fusion=fusion)
    lens = {"a": torch.tensor([150, 33]), "b": torch.tensor([30, 7])}  # 3.0 s and 0.66 s
    feats = {"a": torch.randn(2, 150, 8), "b": torch.randn(2, 30, 4)}
    tok, mask = m(feats, lens)
    assert tok.shape == (2, math.ceil(150 / 17), 24)
    assert mask.sum(1).tolist() == [math.ceil(150 / 17), math.ceil(33 / 17)]
    assert m.num_tokens(3.0) == math.ceil(150 / 17)
    w = m.expert_weights()
    assert set(w) == {"a", "b"} and all(abs(v - (0.5 if fusion == "mixformer" else 1.0)) < 1e-6 for v in w.values())
    with pytest.raises(ValueError, match="missing"):
        m({"a": feats["a"]}, lens)


# ------------------------------------------------------------------------- style tags
def test_style_tags_parse_back(tiny):
    vocab = tiny["vocab"]
    text = tiny["tok"].encode("That is wonderful news.")
    for emo in ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted"):
        for pitch in ("high", "normal", "low"):
            for speed in ("fast", "normal", "slow"):
                style = {"emotion": emo, "pitch": pitch, "speed": speed}
                ids = text + style_tag_ids(vocab, style) + [vocab.special("eot")]
                got_text, got, complete = parse_response(ids, vocab)
                assert (got_text, got, complete) == (text, style, True)
    _, got, complete = parse_response(text + [vocab.special("pitch_low"), vocab.special("eot")], vocab)
    assert got == {"pitch": "low", "speed": "normal", "emotion": "neutral"} and not complete


# ------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def tiny():
    from data_prep.synth.generate import generate_dialogue
    from omni.omnichat.synthetic import emotion_records, tiny_vocab
    recs, tok = emotion_records(3, generate_dialogue, seed=0)
    return {"records": recs, "tok": tok, "vocab": tiny_vocab(tok)}


@pytest.fixture(scope="module")
def chat(tiny):
    from omni.model import build_model
    from omni.omnichat.model import OmniChatModel
    oc = OmniChatConfig(qformer_dim=16, qformer_heads=2)
    llm = build_model(LLM, tiny["vocab"])
    torch.manual_seed(0)
    return OmniChatModel(oc, llm, tiny["vocab"])


def test_turn_examples_put_loss_on_the_response_only(tiny, chat):
    oc = OmniChatConfig(max_history_turns=1)
    vocab = tiny["vocab"]
    rec = max(tiny["records"], key=lambda r: sum(t["kind"] == "turn" for t in r["meta"]["turns"]))
    exs = turn_examples(rec, vocab, oc)
    n_rounds = len(exs)
    assert n_rounds >= 1
    last = exs[-1]
    assert sum(s.kind == "audio" for s in last.segments) == min(n_rounds, 2)  # history capped at 1 round
    x, mask, y = chat.build_inputs([last.segments])
    target = last.target_text_ids + style_tag_ids(vocab, last.style) + [vocab.special("eot")]
    assert y[0][y[0] != -100].tolist() == target  # loss on exactly the current response
    assert x.shape[:2] == y.shape and int(mask.sum()) == x.shape[1]
    with pytest.raises(ValueError, match="audio=True"):
        turn_examples({**rec, "user": None}, vocab, oc)


def test_gates_get_gradients_while_experts_stay_frozen(tiny, chat):
    from omni.omnichat.data import turn_examples
    exs = turn_examples(tiny["records"][0], tiny["vocab"], chat.oc)[:1]
    chat.train()
    chat.zero_grad()
    loss = chat(exs)
    loss.backward()
    g = chat.mixformer.gates.grad
    assert g is not None and g.shape == (3,) and torch.all(g.abs() > 0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in chat.mixformer.qformers["para"].parameters()
               if p.requires_grad and p.dim() > 1)
    assert all(not p.requires_grad and p.grad is None for p in chat.experts.parameters())
    assert not chat.experts["content"].training  # frozen experts stay in eval mode under .train()
    base = chat.llm.get_base_model().model.layers[0].mlp.up_proj.weight
    assert not base.requires_grad and base.grad is None  # LoRA: backbone weights frozen
    chat.zero_grad()


# ----------------------------------------------------------------------------- alpha
def _write_two_source_shards(tmp_path):
    from data_prep.shards import write_shard
    shards, sources = [], {}
    for src in ("synthetic", "real"):
        samples = [{"__key__": f"{src}-{i:03d}", "json": json.dumps({"id": f"{src}-{i}", "source": src}).encode()}
                   for i in range(6)]
        e = write_shard(tmp_path / "shards" / f"{src}.tar", samples)
        shards.append({**e, "path": f"shards/{src}.tar", "split": "train", "source": src})
        sources[src] = {"weight": 1.0}
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": shards, "sources": sources}))


@pytest.mark.parametrize("alpha", [0.0, 0.2, 1.0])
def test_alpha_sampling_is_honoured(tmp_path, alpha):
    from omni.omnichat.shards import mixed_records
    _write_two_source_shards(tmp_path)
    w = alpha_weights(["real", "synthetic"], alpha, ["synthetic"])
    assert w == pytest.approx({"synthetic": alpha, "real": 1 - alpha})
    stream = mixed_records(tmp_path, "train", w, shuffle_buffer=1, seed=3)
    n = 1500
    got = [next(stream) for _ in range(n)]
    assert all(r["source_name"] == r["meta"]["source"] for r in got)
    syn = sum(r["source_name"] == "synthetic" for r in got) / n
    assert abs(syn - alpha) < 0.035, (alpha, syn)


def test_alpha_needs_the_sources_it_mixes():
    with pytest.raises(ConfigError, match="every source"):
        alpha_weights(["synthetic"], 0.2, ["synthetic"])
    with pytest.raises(ConfigError, match="no source is synthetic"):
        alpha_weights(["real"], 0.2, ["synthetic"])
    assert alpha_weights(["a", "b"], None, ["a"], {"a": 2.0}) == {"a": 2.0, "b": 1.0}
    assert alpha_weights(["s1", "s2", "r"], 0.3, ["s1", "s2"], {"s1": 1.0, "s2": 3.0}) == \
        pytest.approx({"s1": 0.075, "s2": 0.225, "r": 0.7})


# ------------------------------------------------------------------------ save/reload
def test_saved_tiny_model_reloads_and_answers_identically(tmp_path, tiny):
    from omni.model import build_model
    from omni.omnichat.model import OmniChatModel, load_omnichat, save_omnichat
    from omni.omnichat.respond import Responder
    from omni.omnichat.train import fit_plain
    oc = OmniChatConfig(experts=["para", "events"], qformer_dim=16, qformer_heads=2, max_new_tokens=6)
    torch.manual_seed(0)
    model = OmniChatModel(oc, build_model(LLM, tiny["vocab"]), tiny["vocab"])
    exs = [e for r in tiny["records"] for e in turn_examples(r, tiny["vocab"], oc)]
    fit_plain(model, iter(exs), max_steps=2, lr=5e-2)  # moves LoRA, gates and Q-Formers off their init
    assert model.mixformer.expert_weights()["para"] != 0.5
    model.eval()
    prefix = exs[0].segments[:-1]
    before = model.generate(prefix)
    with torch.no_grad():
        x, m, _ = model.build_inputs([prefix], with_labels=False)
        logits = model.llm(inputs_embeds=x, attention_mask=m).logits
    save_omnichat(tmp_path / "export", model, tiny["tok"], None, None)
    again, exp = load_omnichat(tmp_path / "export")
    assert again.mixformer.expert_weights() == pytest.approx(model.mixformer.expert_weights())
    with torch.no_grad():
        x2, m2, _ = again.build_inputs([prefix], with_labels=False)
        assert torch.allclose(again.llm(inputs_embeds=x2, attention_mask=m2).logits, logits, atol=1e-5)
    assert again.generate(prefix) == before
    _, style, complete = parse_response(before, tiny["vocab"])
    assert complete  # style-constrained decoding always closes with three tags
    r = Responder(tmp_path / "export", tts=_FakeTTSNotUsed())
    assert r.reply_ids(prefix[1].wave) == model.generate(
        [Segment("ids", prefix[0].ids), Segment("audio", wave=prefix[1].wave), Segment("ids", prefix[2].ids)])
    with pytest.raises(ValueError, match="mono float32"):
        r.reply_ids(np.zeros((2, 16000), np.float32))
    with pytest.raises(FileNotFoundError, match="not an OmniChat export"):
        load_omnichat(tmp_path)


class _FakeTTSNotUsed:
    def synthesize(self, *a, **k):  # pragma: no cover - reply_ids never voices
        raise AssertionError("reply_ids must not call the TTS")


# ---------------------------------------------------------------------- comparisons
def test_comparison_configs_differ_only_in_what_they_compare():
    from pathlib import Path

    from omni.config import flatten_params, load_config
    root = Path(__file__).resolve().parents[1] / "configs"
    ref = flatten_params(load_config(root / "omnichat_ablations" / "experts_all.yaml"))
    seen = {}
    for p in sorted((root / "omnichat_ablations").glob("*.yaml")):
        cfg = load_config(p)
        flat = flatten_params(cfg)
        diff = {k for k in set(ref) | set(flat) if ref.get(k) != flat.get(k)}
        diff -= {"name", "train.storage_path", "train.output_dir", "eval.output_dir"}
        assert all(k.startswith("omnichat.") for k in diff), (p.name, diff)
        assert cfg.mlflow.experiment == "omnichat-ablations"
        seen[p.stem] = cfg.omnichat
    assert {tuple(seen[f"experts_{n}"].experts) for n in ("content", "para", "events")} == \
        {("content",), ("para",), ("events",)}
    assert sorted(seen[n].alpha for n in seen if n.startswith("alpha_")) == [0.0, 0.1, 0.2, 0.3, 1.0]
    assert seen["fusion_concat"].fusion == "concat" and seen["asr_baseline"].input == "asr_text"
    assert sorted(seen[n].data_fraction for n in seen if n.startswith("scale_")) == [0.25, 0.5, 1.0]
    assert sorted(seen[n].window_frames for n in seen if n.startswith("window_")) == [8, 50]
    assert load_config(root / "omnichat_tiny.yaml").omnichat.fusion == "mixformer"
    assert load_config(root / "omnichat_llama3_8b.yaml").omnichat.content_path


def test_experts_take_a_wave_whose_last_chunk_is_tiny():
    """4 s + 10 ms: the tiny content expert's last 4 s chunk is 160 samples (stft padding used to fail)."""
    from omni.omnichat.experts import TinyWhisperContent
    w = (0.1 * np.sin(np.arange(64160) * 0.05)).astype(np.float32)
    f = TinyWhisperContent().freeze().features(w)
    assert f.shape == (201, 64) and torch.isfinite(f).all()


# ------------------------------------------------------------------ speaker normalisation
def _prosody(f0_log2: float, energy: float, n: int = 200, seed: int = 0) -> torch.Tensor:
    """Prosody-encoder-shaped frames: half voiced, given log-F0 and energy levels (+ noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 8)
    x[:, 1] = (torch.arange(n) % 2 == 0).float()
    x[:, 0] = (f0_log2 + 0.1 * torch.randn(n, generator=g)) * x[:, 1]
    x[:, 2] = energy + 0.2 * torch.randn(n, generator=g)
    x[:, 3] = 0.05
    return x


def test_speaker_norm_compares_each_speaker_with_itself():
    from omni.omnichat.speakers import SpeakerNorm
    sn = SpeakerNorm(prior_frames=1)
    low, high = _prosody(-1.0, 0.0), _prosody(1.0, 2.0, seed=1)
    sn.observe(low, "low", key="a")
    sn.observe(low, "low", key="a")  # the same turn again (next epoch) counts once
    sn.observe(high, "high", key="b")
    assert sn.speakers["low"][0] == 100 and float(sn.pooled_n) == 200
    # each voice's own frames come out centred: a deep and a high voice at rest look alike
    for feats, spk in ((low, "low"), (high, "high")):
        z = sn(feats, spk)
        voiced = feats[:, 1] > 0
        assert abs(float(z[voiced, 0].mean())) < 0.15 and abs(float(z[:, 2].mean())) < 0.15
        assert torch.all(z[~voiced, 0] == 0) and torch.equal(z[:, 1], feats[:, 1])
    # the same raised pitch reads as raised for the deep voice, lowered for the high one
    probe = _prosody(0.0, 1.0, seed=2)
    assert float(sn(probe, "low")[probe[:, 1] > 0, 0].mean()) > 3
    assert float(sn(probe, "high")[probe[:, 1] > 0, 0].mean()) < -3
    # an unknown speaker gets the pooled statistics; a held-out speaker adapts without touching them
    pooled = sn(probe, None)
    assert abs(float(pooled[probe[:, 1] > 0, 0].mean())) < 0.3
    sn.observe(_prosody(3.0, 5.0, seed=3), "new", key="c", pooled=False)
    assert float(sn.pooled_n) == 200 and float(sn(probe, "new")[probe[:, 1] > 0, 0].mean()) < -3
    again = SpeakerNorm(prior_frames=1)
    again.load_state_dict(sn.state_dict())
    assert torch.allclose(again(probe, None), pooled)
    with pytest.raises(RuntimeError, match="observed no audio"):
        SpeakerNorm()(probe, None)


def test_para_norm_needs_the_prosody_encoder():
    with pytest.raises(ValueError, match="para_norm"):
        OmniChatConfig(para_norm="speaker", para_path="/somewhere")
