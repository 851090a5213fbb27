"""The phonetic speech tokenizer (omni.speech.phonetic) with small random networks: the streaming
paths equal the batch paths, the decoder's latency bound holds, the torch training mirror and the
numpy run-time stack compute the same thing, and a stale or incomplete folder is refused with the fix.

The trained build (``python -m data_prep.build_units``, ``make units``) is measured by
``benchmarks/speech_tokenizer.py``; these tests need no build."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omni.speech import phonetic as P
from omni.speech.base import SpeechTokenizerError
from omni.speech.phonetic_train import CausalStack

REC_DIL, DEC_DIL = (1, 2, 4, 1), (1, 2, 1)


def random_tokenizer(seed: int = 0) -> P.PhoneticTokenizer:
    torch.manual_seed(seed)
    rec = CausalStack(P.N_MELS, 16, len(P.PHONES) + 1, REC_DIL).export("rec")
    rec["rec.feat_mu"] = np.full(P.N_MELS, -6.0, np.float32)
    rec["rec.feat_sd"] = np.full(P.N_MELS, 3.0, np.float32)
    dec = CausalStack(16, 16, P.FRAMES_PER_UNIT * (P.N_CEP + 2), DEC_DIL, vocab=P.num_units()).export("dec")
    d = P.FRAMES_PER_UNIT * (P.N_CEP + 2)
    dec["dec.tgt_mu"], dec["dec.tgt_sd"] = np.zeros(d), np.full(d, 0.3)
    info = {"phones": list(P.PHONES), "lookahead_frames": 4, "decoder_lookahead_units": 1,
            "rec_dilations": list(REC_DIL), "dec_dilations": list(DEC_DIL), "num_units": P.num_units()}
    return P.PhoneticTokenizer({**rec, **dec}, info)


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Gated harmonic tone with noise bursts and silent gaps (units of every kind: silence, voiced)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * P.SAMPLE_RATE_HZ)) / P.SAMPLE_RATE_HZ
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / P.SAMPLE_RATE_HZ) / k for k in range(1, 6))
    x = 0.2 * x + 0.05 * rng.standard_normal(t.size)
    gate = (np.sin(2 * np.pi * 1.3 * t) > -0.3).astype(float)
    return (x * gate).astype(np.float32)


@pytest.fixture(scope="module")
def tok():
    return random_tokenizer()


def test_units_layout(tok):
    assert tok.num_units == 1 + len(P.PHONES) * P.PITCH_BINS
    u = tok.unit_of(5, 2)
    assert tok.phone_of(np.array([0, u])).tolist() == [0, 5]


def test_stream_encoder_equals_batch(tok):
    wave = speechlike()
    batch = tok.encode(wave)
    assert batch.size == wave.size // P.UNIT_SAMPLES
    assert (batch == 0).any() and (batch != 0).any(), "the test clip must give silence and speech units"
    rng = np.random.default_rng(1)
    enc, got, pos = tok.stream_encoder(), [], 0
    while pos < wave.size:
        n = int(rng.integers(1, 2000))
        got.append(enc.feed(wave[pos:pos + n]))
        pos += n
    got.append(enc.flush())
    np.testing.assert_array_equal(np.concatenate(got)[: batch.size], batch)


def test_stream_decoder_equals_batch_and_latency_bound(tok):
    rng = np.random.default_rng(2)
    units = rng.integers(1, tok.num_units, 60)
    units[20:28] = 0
    batch = tok.decode(units)
    assert batch.size == units.size * P.UNIT_SAMPLES
    assert np.all(batch[22 * P.UNIT_SAMPLES:26 * P.UNIT_SAMPLES] == 0), "silence units decode to zeros"
    assert np.abs(batch[: 18 * P.UNIT_SAMPLES]).max() > 1e-3, "speech units decode to sound"
    dec, got, worst = tok.stream_decoder(), [], 0.0
    for k, u in enumerate(units, 1):
        got.append(dec.feed(np.array([u])))
        held = k * P.UNIT_SAMPLES - sum(g.size for g in got)      # audio owed but not yet out
        worst = max(worst, held / P.UNIT_SAMPLES)
    got.append(dec.flush())
    np.testing.assert_allclose(np.concatenate(got), batch, atol=1e-6)
    assert worst <= 2.0, f"decoder holds back {worst:.2f} units (bound: 2)"


def test_torch_mirror_equals_numpy_stack():
    torch.manual_seed(3)
    m = CausalStack(8, 12, 5, (1, 2, 4))
    stack = P.ConvStack(m.export("x"), "x", (1, 2, 4))
    x = np.random.default_rng(3).standard_normal((37, 8)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x[None]))[0].numpy()
    state, got = stack.state(), []
    for i in range(0, 37, 4):                          # blocks, as the run-time encoder feeds it
        got.append(stack.step(x[i:i + 4], state))
    np.testing.assert_allclose(np.concatenate(got), want, atol=1e-4)


def test_folder_round_trip_and_refusals(tok, tmp_path):
    d = tok.save(tmp_path / "units")
    again = P.PhoneticTokenizer.load(d)
    wave = speechlike(1.0)
    np.testing.assert_array_equal(again.encode(wave), tok.encode(wave))
    info = json.loads((d / "speech_tokenizer.json").read_text())
    (d / "speech_tokenizer.json").write_text(json.dumps({**info, "layout": P.LAYOUT + 1}))
    with pytest.raises(SpeechTokenizerError, match="make units"):
        P.PhoneticTokenizer.load(d)
    (d / "speech_tokenizer.json").write_text(json.dumps(info))
    (d / "weights.npz").unlink()
    with pytest.raises(SpeechTokenizerError, match="make units"):
        P.PhoneticTokenizer.load(d)
