"""configs/omniflatten_qwen2_0.5b_mimi.yaml: the paper's setting with a speech path that decodes end to
end from local weights - a tiny random transformers Mimi saved by the test stands in for kyutai/mimi."""
from pathlib import Path

import numpy as np
import pytest

from data_prep.pipeline import speech_tokenizer_from_config
from omni.config import ConfigError, check_speech_decodable, load_config

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _tiny_mimi_folder(path: Path) -> Path:
    """A transformers Mimi folder (config.json + safetensors) at 16 kHz, 12.5 frames/s, like the real
    codec's frame rate; random weights with distinct codebook entries."""
    import torch
    from transformers import MimiConfig, MimiModel

    cfg = MimiConfig(hidden_size=64, num_filters=8, codebook_size=256, codebook_dim=32,
                     vector_quantization_hidden_dimension=32, num_quantizers=8, num_hidden_layers=2,
                     intermediate_size=128, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                     upsample_groups=64, sampling_rate=SR, upsampling_ratios=[8, 5, 4, 4])
    torch.manual_seed(0)
    model = MimiModel(cfg)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("codebook.embed_sum"):
                buf.copy_(torch.randn_like(buf))
    model.save_pretrained(str(path))
    return path


def test_s3_config_is_refused_for_audio_jobs_and_mimi_is_not():
    s3 = load_config(ROOT / "configs" / "omniflatten_qwen2_0.5b.yaml")
    for job in ("evaluate", "serve", "demo"):
        with pytest.raises(ConfigError, match=f"^{job} needs speech units turned back into audio"):
            check_speech_decodable(s3, job)
    check_speech_decodable(s3, "train")                     # training on S3 units is fine
    mimi = load_config(ROOT / "configs" / "omniflatten_qwen2_0.5b_mimi.yaml")
    for job in ("evaluate", "serve", "demo"):
        check_speech_decodable(mimi, job)


def test_mimi_config_decodes_speech_end_to_end(tmp_path):
    """Config → the data set's speech tokenizer (from the local Mimi folder, as configured) → an export
    → the streaming duplex engine: units in, units out, and audio back."""
    import torch

    from omni.config import Config
    from omni.duplex import DuplexEngine
    from omni.model import build_model, save_export
    from omni.speech_tokenizer import load_speech_tokenizer
    from omni.text_tokenizer import TextTokenizer
    from omni.vocab import Vocab

    cfg = load_config(ROOT / "configs" / "omniflatten_qwen2_0.5b_mimi.yaml",
                      [f"tokenizer.speech_path={_tiny_mimi_folder(tmp_path / 'mimi')}"])
    tok = speech_tokenizer_from_config(cfg, waves=[])
    assert tok.kind == "mimi" and tok.num_codebooks == 1 and tok.num_units == 256 and tok.frame_rate_hz == 12.5
    tok.save(tmp_path / "speech")
    tok = load_speech_tokenizer(tmp_path / "speech")        # as training and serving load it
    t = np.arange(2 * SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    units = tok.encode(wave)
    assert len(units) == 25 and units.max() < tok.num_units
    assert len(tok.decode(units)) == len(wave)

    tiny = Config()                                          # the paper's backbone is too big for a test
    tiny.stages = cfg.stages
    text = TextTokenizer.train(["hello there", "how are you", "fine thanks"] * 8, vocab_size=300, seed=0)
    vocab = Vocab(text.vocab_size, tok.num_units)
    torch.manual_seed(0)
    export = save_export(tmp_path / "export", build_model(tiny.model, vocab), vocab, text, tmp_path / "speech", tiny,
                         extra={"stage": "full_duplex_2"})
    engine = DuplexEngine(export)
    assert engine.speech_chunk == 5 and engine.chunk_ms == 400.0      # the config's chunk, 400 ms
    with engine.session() as s:
        audio = [ev["pcm"] for i in range(0, len(wave), 320) for ev in s.feed(wave[i:i + 320]) if ev["type"] == "audio"]
    out = np.concatenate(audio)
    assert len(out) >= 3 * 6400 and np.isfinite(out).all() and np.abs(out).max() > 0   # decoded reply audio
