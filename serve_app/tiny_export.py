"""A tiny random-weight export for tests, benchmarks and serving smoke runs (no training, no downloads).

    python -m serve_app.tiny_export OUT_DIR [--num-units 32] [--speech-chunk 10]

Fits the built-in mel + k-means speech tokenizer on a few seconds of synthetic tones and noise,
trains a byte-level BPE on a few sentences, builds the tiny Qwen2 from ``ModelConfig()`` with
random weights and writes it with :func:`omni.model.save_export` (safetensors). Behaviour, not
quality: the model babbles.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

SENTENCES = ["hello there, how are you today?", "i am fine, thank you very much.",
             "what a lovely day it is outside.", "could you tell me the time please?",
             "the weather is nice and warm.", "let us talk about music and films."]


def demo_wave(seconds: float = 4.0, seed: int = 0, sample_rate_hz: int = 16000) -> np.ndarray:
    """Speech-like test signal: gliding harmonic tones in bursts separated by pauses, plus noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate_hz
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 0.5 * t) > -0.3).astype(np.float64)
    wave = 0.25 * voiced * gate + 0.01 * rng.standard_normal(n)
    return wave.astype(np.float32)


def build_tiny_export(out_dir, *, num_units: int = 32, speech_chunk: int = 10, text_chunk: int = 2,
                      stage: str = "full_duplex_3", seed: int = 0) -> Path:
    """Write a tiny export to ``out_dir`` and return its path."""
    from omni.config import Config
    from omni.model import build_model, save_export
    from omni.speech_tokenizer import MelKMeansTokenizer
    from omni.text_tokenizer import TextTokenizer
    from omni.vocab import Vocab

    out_dir = Path(out_dir)
    waves = [demo_wave(3.0, seed + i) for i in range(3)]
    tok = MelKMeansTokenizer.fit(waves, num_units=num_units, seed=seed)
    tt = TextTokenizer.train(SENTENCES * 4, vocab_size=300, seed=seed)
    vocab = Vocab(tt.vocab_size, tok.num_units)
    cfg = Config()
    cfg.stages.full_duplex_3.speech_chunk = speech_chunk
    cfg.stages.full_duplex_3.text_chunk = text_chunk
    cfg.stages.full_duplex_2.speech_chunk = speech_chunk
    cfg.tokenizer.num_units = num_units
    model = build_model(cfg.model, vocab)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(Path(tmp) / "speech")
        return save_export(out_dir, model, vocab, tt, Path(tmp) / "speech", cfg, extra={"stage": stage})


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__)
        sys.exit(2)
    opts = {"--num-units": 32, "--speech-chunk": 10}
    for i, a in enumerate(args[1:]):
        if a in opts:
            opts[a] = int(args[i + 2])
    print(build_tiny_export(args[0], num_units=opts["--num-units"], speech_chunk=opts["--speech-chunk"]))
