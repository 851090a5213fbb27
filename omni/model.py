"""Model builder and export: one unmodified decoder LLM (Qwen2 architecture) for all stages.

- ``backbone: tiny_qwen2``: ``Qwen2ForCausalLM`` built from the literal numbers in
  :class:`omni.config.ModelConfig`, ``vocab_size = vocab.size``, seeded random init, tied
  embeddings (like Qwen2-0.5B).
- ``backbone: pretrained``: weights from a local folder (``local_files_only``, never a
  download) of any causal-LM architecture transformers knows (Qwen2, Llama: SmolLM2 via
  ``model.path: pretrained:smollm2-135m``, see :mod:`omni.pretrained`); the embedding / LM head
  is resized to ``vocab.size`` (text rows keep their pretrained values, specials and units are
  appended rows; an omni export, i.e. the previous stage, keeps all its trained rows).
- ``lora: true``: peft LoRA on ``lora_targets`` with the appended rows (specials + units)
  trainable through ``trainable_token_indices`` (text rows stay frozen).

An export folder holds ``model.safetensors`` + ``config.json`` (LoRA merged), ``vocab.json``,
``text_tokenizer/``, ``speech_tokenizer/``, ``config.resolved.yaml`` and ``export.json``.
Only safetensors are loaded; a folder with pickled weights is refused.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from omni.config import Config, ModelConfig, load_config, save_resolved
from omni.text_tokenizer import TextTokenizer
from omni.vocab import Vocab, VocabMismatchError

EXPORT_FORMAT = "omni-export"
EXPORT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _tiny_qwen2(cfg: ModelConfig, vocab: Vocab):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
        raise ValueError(f"model.hidden_size ({cfg.hidden_size}) must divide by model.num_heads ({cfg.num_heads}) "
                         f"and num_heads by model.num_kv_heads ({cfg.num_kv_heads})")
    hf_cfg = Qwen2Config(vocab_size=vocab.size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                         num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_position_embeddings,
                         tie_word_embeddings=True, pad_token_id=vocab.special("pad"),
                         eos_token_id=vocab.special("eot"), bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(hf_cfg)
    return model


def _pretrained(cfg: ModelConfig, vocab: Vocab):
    from transformers import AutoModelForCausalLM

    from omni.pretrained import resolve_path
    path = Path(resolve_path(cfg.path) or "")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise FileNotFoundError(f"model.path {str(path)!r} is not a local model folder with config.json "
                                f"(nothing is downloaded; point model.path at saved weights)")
    _refuse_pickles(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                 dtype=torch.float32)
    rows = model.get_input_embeddings().weight.shape[0]
    if vocab.text_size > rows:
        raise VocabMismatchError(f"text tokenizer has {vocab.text_size} ids but the backbone at {path} has only "
                                 f"{rows} embedding rows: use the backbone's own tokenizer (tokenizer.text: pretrained)")
    # A raw backbone: rows from text_size on (new rows, and unused padding rows reused for specials)
    # get a small random init. An omni export (a previous stage) keeps its trained rows.
    first_new = rows if (path / "export.json").is_file() else vocab.text_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model.resize_token_embeddings(vocab.size, mean_resizing=False)
        emb = model.get_input_embeddings().weight
        with torch.no_grad():
            std = float(emb[:vocab.text_size].std())
            emb[first_new:].normal_(0.0, std)
            out = model.get_output_embeddings().weight
            if out is not emb:
                out[first_new:].normal_(0.0, float(out[:vocab.text_size].std()))
    model.config.pad_token_id = vocab.special("pad")
    model.config.eos_token_id = vocab.special("eot")
    return model


def _refuse_pickles(path: Path) -> None:
    pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles and not any(p.suffix == ".safetensors" for p in path.iterdir()):
        raise ValueError(f"{path} holds only pickled weights ({', '.join(sorted(pickles))}); omni loads "
                         f"safetensors only: convert with save_pretrained(safe_serialization=True)")


def apply_lora(model, cfg: ModelConfig, vocab: Vocab):
    """Wrap ``model`` in peft LoRA; the appended rows (specials + units) stay trainable."""
    from peft import LoraConfig, get_peft_model
    new_ids = vocab.new_token_ids
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    indices = {"embed_tokens": new_ids} if tied else {"embed_tokens": new_ids, "lm_head": new_ids}
    lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.lora_targets),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", trainable_token_indices=indices)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        return get_peft_model(model, lcfg)


def build_model(model_cfg: ModelConfig, vocab: Vocab, lora: bool | None = None) -> torch.nn.Module:
    """Build the backbone for ``vocab`` (see module docstring). ``lora`` overrides
    ``model_cfg.lora`` (the stage's ``lora`` setting). ``model.omni_info`` holds a summary."""
    model = _tiny_qwen2(model_cfg, vocab) if model_cfg.backbone == "tiny_qwen2" else _pretrained(model_cfg, vocab)
    use_lora = model_cfg.lora if lora is None else lora
    if use_lora:
        model = apply_lora(model, model_cfg, vocab)
    info = {"backbone": model_cfg.backbone, "lora": bool(use_lora), "vocab_size": vocab.size,
            "params": count_params(model), "trainable_params": count_params(model, trainable_only=True),
            "flops_per_token": flops_per_token(model)}
    model.omni_info = info
    return model


def base_model(model) -> torch.nn.Module:
    """The plain transformers model under a peft wrapper (or ``model`` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def count_params(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_token(model, seq_len: int = 512) -> float:
    """Training FLOPs per token: ``6 N + 12 L d T`` (PaLM appendix B), N = matmul params
    (input embedding excluded, LM head counted), L layers, d hidden size, T = ``seq_len``."""
    m = base_model(model)
    emb = m.get_input_embeddings().weight
    out = m.get_output_embeddings().weight
    n = sum(p.numel() for n_, p in m.named_parameters() if p is not emb and "lora_" not in n_
            and "trainable_tokens" not in n_)
    if out is emb:
        n += out.numel()
    c = m.config
    return float(6 * n + 12 * c.num_hidden_layers * c.hidden_size * seq_len)


# --------------------------------------------------------------------------- export
@dataclass
class Export:
    model: torch.nn.Module
    vocab: Vocab
    text_tokenizer: TextTokenizer
    speech_tokenizer_dir: Path | None
    config: Config | None
    info: dict = field(default_factory=dict)


def save_export(out_dir, model, vocab: Vocab, text_tokenizer: TextTokenizer, speech_tokenizer_dir,
                config: Config | None, extra: dict | None = None) -> Path:
    """Write an export folder (LoRA merged into the weights). Written to a temp folder and
    renamed, so a crash never leaves a half export under ``out_dir``."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    plain = base_model(model)
    if plain is not model:  # peft: merge a copy, keep the caller's (training) model intact
        plain = copy.deepcopy(model).merge_and_unload()
    if plain.get_input_embeddings().weight.shape[0] != vocab.size:
        raise VocabMismatchError(f"model has {plain.get_input_embeddings().weight.shape[0]} embedding rows, "
                                 f"vocab.size is {vocab.size}")
    plain.save_pretrained(str(tmp), safe_serialization=True)
    vocab.save(tmp / "vocab.json")
    text_tokenizer.save(tmp / "text_tokenizer")
    if speech_tokenizer_dir is not None:
        src = Path(speech_tokenizer_dir)
        if not src.is_dir():
            raise FileNotFoundError(f"speech tokenizer folder not found: {src}")
        shutil.copytree(src, tmp / "speech_tokenizer")
    if config is not None:
        save_resolved(config, tmp)
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "created_unix_s": time.time(),
            "vocab": vocab.to_json(), "params": count_params(plain),
            "has_speech_tokenizer": speech_tokenizer_dir is not None, "extra": extra or {}}
    (tmp / "export.json").write_text(json.dumps(meta, indent=1, default=str))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_export(export_dir, expect_vocab: Vocab | None = None, dtype: torch.dtype = torch.float32) -> Export:
    """Load an export folder (model in eval mode, weights in ``dtype``). ``expect_vocab``: fail
    clearly when the export's vocabulary layout differs from it."""
    from transformers import AutoModelForCausalLM
    d = Path(export_dir)
    if not (d / "export.json").is_file():
        raise FileNotFoundError(f"{d} is not an omni export (no export.json)")
    _refuse_pickles(d)
    if not (d / "model.safetensors").is_file() and not list(d.glob("model-*.safetensors")):
        raise FileNotFoundError(f"{d} has no model.safetensors")
    info = json.loads((d / "export.json").read_text())
    vocab = Vocab.load(d / "vocab.json")
    if expect_vocab is not None:
        expect_vocab.check_compatible(vocab)
    model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True, use_safetensors=True, dtype=dtype)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows != vocab.size:
        raise VocabMismatchError(f"checkpoint vocab layout differs: model has {rows} rows, vocab.json says {vocab.size}")
    model.eval()
    tok = TextTokenizer.load(d / "text_tokenizer")
    if tok.vocab_size > vocab.text_size:
        raise VocabMismatchError(f"checkpoint vocab layout differs: text tokenizer has {tok.vocab_size} ids, more than "
                                 f"vocab.json text_size is {vocab.text_size}")
    st = d / "speech_tokenizer"
    cfg_path = d / "config.resolved.yaml"
    config = load_config(cfg_path) if cfg_path.is_file() else None
    return Export(model, vocab, tok, st if st.is_dir() else None, config, info)


def greedy_decode(model, prompt: list[int], allowed: torch.Tensor, stop_id: int, max_new: int) -> list[int]:
    """Greedy decoding with a KV cache, restricted to the ``allowed`` ids (bool mask over the
    vocabulary); stops at ``stop_id``, which is not returned. Used by ASR (``<asr> S <text>``),
    TTS (``<tts> ... <speech>``) and evaluation."""
    import inspect

    ids = torch.tensor([prompt])
    out, past = [], None
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        for _ in range(max_new):
            res = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{kw: past})
            past = res.past_key_values if getattr(res, "cache", None) is None else res.cache
            nxt = int(res.logits[0, -1].masked_fill(~allowed, float("-inf")).argmax())
            if nxt == stop_id:
                break
            out.append(nxt)
            ids = torch.tensor([[nxt]])
    return out
