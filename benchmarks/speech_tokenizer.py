"""Benchmark the built-in mel k-means speech tokenizer on espeak-ng speech.

Fits on a few minutes of synthetic speech (several voices, rates and pitches), then on
held-out sentences (other sentences, and one voice never seen in the fit) measures in the
same run:

* round-trip quality of ``decode(encode(x))`` against ``x``: log-spectral distance (LSD, dB)
  and mel-cepstral distortion (MCD, dB); baseline = decoding random units (same silences),
  and librosa's reference decoder (``mel_to_audio``: NNLS + 32 Griffin-Lim iterations on the
  same unit centroids) for quality and speed;
* real-time factors on one core (``OMP/BLAS threads = 1``): batch encode, batch decode,
  streaming encode (20 ms chunks) and streaming decode (10-unit chunks, the duplex chunk).
  Goal: encode + decode RTF <= 0.05.

Usage: ``python benchmarks/speech_tokenizer.py [--train-minutes 3] [--num-units 1024]``.
The last line printed is a JSON object.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from omni.speech.quality import log_spectral_distance_db, mel_cepstral_distortion_db
from omni.speech_tokenizer import MelKMeansTokenizer

SR = 16000
SUBJECTS = ["the old train", "my sister", "a small dog", "the weather report", "our new teacher",
            "the red balloon", "this coffee", "the city library", "your phone", "the garden"]
VERBS = ["arrived", "looks", "sounded", "moved", "stayed", "felt", "turned", "seemed"]
ENDS = ["much later than anyone expected", "very quiet this morning", "bright and cheerful",
        "near the river bank", "strangely familiar to me", "full of surprises today",
        "ready before seven thirty", "a little too expensive", "right behind the station"]
TRAIN_VOICES = ["en-us", "en+f3", "en-us+m3", "en", "en+m1", "en+f2"]
TEST_VOICES = ["en-us", "en+f4"]          # en+f4 never appears in the fit


def sentences(n: int, seed: int) -> list[str]:
    r = np.random.default_rng(seed)
    return [f"{r.choice(SUBJECTS).capitalize()} {r.choice(VERBS)} {r.choice(ENDS)}."
            for _ in range(n)]


def synth(texts: list[str], voices: list[str], seed: int) -> list[np.ndarray]:
    from data_prep.synth.tts import get_tts
    tts, r, out = get_tts("espeak"), np.random.default_rng(seed), []
    for i, t in enumerate(texts):
        out.append(tts.synthesize(t, voice=voices[i % len(voices)],
                                  pitch=str(r.choice(["low", "normal", "high"])),
                                  speed=str(r.choice(["slow", "normal", "fast"]))).wave)
    return out


def timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


def stream_encode(tok, wave, chunk):
    enc = tok.stream_encoder()
    return np.concatenate([enc.feed(wave[i:i + chunk]) for i in range(0, wave.size, chunk)])


def stream_decode(tok, units, chunk):
    dec = tok.stream_decoder()
    parts = [dec.feed(units[i:i + chunk]) for i in range(0, units.size, chunk)]
    return np.concatenate(parts + [dec.flush()])


def librosa_decode(tok, units):
    """Reference decoder: unit centroid mel -> librosa NNLS + Griffin-Lim (32 iterations)."""
    import librosa
    mel = np.exp(tok.centroids[np.maximum(units, 1) - 1]).T          # (n_mels, n)
    mel[:, units == tok.silence_unit] = 0.0
    y = librosa.feature.inverse.mel_to_audio(mel, sr=SR, n_fft=tok.n_fft, hop_length=tok.hop_samples,
                                             window="hann", center=True, power=2.0, n_iter=32)
    y = np.pad(y, (0, max(0, units.size * tok.hop_samples - y.size)))[: units.size * tok.hop_samples]
    return y.astype(np.float32)


def quality(ref_waves, dec_waves):
    lsd = [log_spectral_distance_db(r[: d.size], d) for r, d in zip(ref_waves, dec_waves)]
    mcd = [mel_cepstral_distortion_db(r[: d.size], d) for r, d in zip(ref_waves, dec_waves)]
    return float(np.mean(lsd)), float(np.mean(mcd))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-minutes", type=float, default=3.0)
    ap.add_argument("--num-units", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-sentences", type=int, default=12)
    args = ap.parse_args()

    train, secs, i = [], 0.0, 0
    while secs < args.train_minutes * 60:
        batch = synth(sentences(20, 1000 + i), TRAIN_VOICES, seed=i)
        train += batch
        secs += sum(w.size for w in batch) / SR
        i += 1
    test = synth(sentences(args.test_sentences, 7), TEST_VOICES, seed=99)
    test_s = sum(w.size for w in test) / SR
    print(f"train {secs:.0f} s in {len(train)} utterances, test {test_s:.1f} s", flush=True)

    tok, fit_s = timed(MelKMeansTokenizer.fit, train, args.num_units, args.seed)
    tok.encode(test[0]), tok.decode(tok.encode(test[0]))      # warm-up (mag table, caches)
    print(f"fit {fit_s:.1f} s", flush=True)

    units, enc_s = zip(*[timed(tok.encode, w) for w in test])
    decoded, dec_s = zip(*[timed(tok.decode, u) for u in units])
    s_units, senc_s = zip(*[timed(stream_encode, tok, w, 320) for w in test])
    s_dec, sdec_s = zip(*[timed(stream_decode, tok, u, 10) for u in units])
    assert all(np.array_equal(a, b) for a, b in zip(s_units, units)), "stream != batch encode"
    assert all(np.array_equal(a, b) for a, b in zip(s_dec, decoded)), "stream != batch decode"

    rng = np.random.default_rng(args.seed)
    rand_dec = []
    for u in units:
        r = rng.integers(1, tok.num_units, u.size)
        r[u == tok.silence_unit] = tok.silence_unit
        rand_dec.append(tok.decode(r))
    lsd, mcd = quality(test, decoded)
    lsd_r, mcd_r = quality(test, rand_dec)
    ref = test[: max(1, len(test) // 3)]
    lib_dec, lib_s = zip(*[timed(librosa_decode, tok, u) for u in units[: len(ref)]])
    lsd_l, mcd_l = quality(ref, lib_dec)
    lsd_o, mcd_o = quality(ref, decoded[: len(ref)])
    ref_s = sum(w.size for w in ref) / SR
    silence_frac = float(np.mean(np.concatenate(units) == tok.silence_unit))

    res = {
        "num_units": tok.num_units, "train_audio_s": round(secs, 1), "test_audio_s": round(test_s, 1),
        "fit_s": round(fit_s, 2), "units_used_fraction": round(float(
            np.unique(np.concatenate(units)).size / tok.num_units), 3),
        "silence_unit_fraction": round(silence_frac, 3),
        "lsd_db": round(lsd, 2), "lsd_random_units_db": round(lsd_r, 2),
        "lsd_ratio_vs_random": round(lsd / lsd_r, 3),
        "mcd_db": round(mcd, 2), "mcd_random_units_db": round(mcd_r, 2),
        "mcd_ratio_vs_random": round(mcd / mcd_r, 3),
        "lsd_db_subset": round(lsd_o, 2), "lsd_librosa_gl32_db_subset": round(lsd_l, 2),
        "mcd_db_subset": round(mcd_o, 2), "mcd_librosa_gl32_db_subset": round(mcd_l, 2),
        "encode_rtf": round(sum(enc_s) / test_s, 5), "decode_rtf": round(sum(dec_s) / test_s, 5),
        "stream_encode_rtf_20ms_chunks": round(sum(senc_s) / test_s, 5),
        "stream_decode_rtf_10unit_chunks": round(sum(sdec_s) / test_s, 5),
        "encode_plus_decode_rtf": round((sum(enc_s) + sum(dec_s)) / test_s, 5),
        "librosa_decode_rtf": round(sum(lib_s) / ref_s, 4),
        "decode_speedup_vs_librosa": round((sum(lib_s) / ref_s) / (sum(dec_s) / test_s), 1),
        "goal_encode_plus_decode_rtf": "<= 0.05",
        "goal_met_encode_plus_decode_rtf": (sum(enc_s) + sum(dec_s)) / test_s <= 0.05,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
