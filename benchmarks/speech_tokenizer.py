"""Can Whisper follow speech after a trip through our speech units? Round-trip WER and speed.

    .venv/bin/python benchmarks/speech_tokenizer.py [--tokenizer pretrained:phone-units] [--sentences 30]
        [--baseline-units 1024]

Held-out sentences (a template-writer seed no build uses) voiced by the **held-out voice family**
(espeak-ng variants ``+f4``, ``+f5``, ``+Andy``: never in the tokenizer's training, nor in the
cpu_duplex corpus) and, separately, by the Piper voice family (held-out sentences; the decoder's
target voice is Piper ``joe``). For each set, Whisper base (greedy, shared normaliser) transcribes
the original audio and ``decode(encode(audio))``; WER against the script text. In the same run the
old mel + k-means tokenizer (``--baseline-units``, fitted on espeak speech of the training voices)
is measured the same way. Speed on one core (BLAS/OMP threads = 1): encode and decode real-time
factors, streaming == batch for encode and decode, and the decoder's latency in units (audio still
held back after a unit is fed). Goals (issue 19): round-trip WER <= 0.25 and <= 1.5x the original's
on the held-out voices; encode + decode RTF <= 0.05; decoder latency <= 2 units.
Runs ~25 min at load average 10 on the 2-core machine (Whisper on 4 x 45 clips, the baseline fit). The last line printed is a JSON object.
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
from _goals import judge  # noqa: E402  (benchmarks/_goals.py: a script's folder is on sys.path)

HELDOUT_VOICES = ("en-us+f4", "en+Andy", "en+f5", "en+f4", "en-us+Andy", "en-us+f5")
FIT_VOICES = ("en-us+m3", "en+m1", "en+f3", "en-us+f2", "en+linda", "en-us+m5", "en+m4", "en-us+m7")
TEST_SEED = 424242


def test_texts(n: int, seed: int = TEST_SEED, exclude: set[str] | None = None) -> list[str]:
    from data_prep.build_units import sentences
    exclude = exclude or set()
    return [t for t in sentences(seed, 6 * n) if len(t.split()) >= 4 and t not in exclude][:n]


def training_texts(tokenizer_dir) -> set[str]:
    """The sentences a phonetic build trained on (from its build.json recipe), to keep out of tests."""
    from data_prep.build_units import sentences
    f = Path(tokenizer_dir) / "build.json"
    if not f.is_file():
        return set()
    r = json.loads(f.read_text())["recipe"]
    return set(sentences(r["seed"] + 1, r["espeak_utterances"] + r["piper_utterances"])) | set(
        sentences(r["seed"] + 2, r["target_utterances"]))


def voice_set(texts: list[str], backend: str, voices, seed: int) -> list[tuple[str, np.ndarray]]:
    from data_prep.synth.tts import get_tts
    tts, rng = get_tts(backend), np.random.default_rng(seed)
    return [(t, tts.synthesize(t, voices[i % len(voices)], "neutral", str(rng.choice(["low", "normal", "high"])),
                               str(rng.choice(["slow", "normal", "fast"]))).wave) for i, t in enumerate(texts)]


def round_trip_wer(tokenizer, items: list[tuple[str, np.ndarray]], asr) -> dict:
    """WER of Whisper on the original audio and on decode(encode(audio)), same texts."""
    from omni.metrics.text import wer
    refs = [t for t, _ in items]
    orig = [asr.transcribe_text(w) for _, w in items]
    rt = [asr.transcribe_text(tokenizer.decode(tokenizer.encode(w))) for _, w in items]
    e_o, e_r = wer(refs, orig), wer(refs, rt)
    return {"wer_original": round(e_o, 4), "wer_round_trip": round(e_r, 4),
            "round_trip_over_original_ratio": round(e_r / max(e_o, 1e-9), 3),
            "examples": [{"ref": r, "original": o, "round_trip": h} for r, o, h in list(zip(refs, orig, rt))[:3]]}


def speed(tokenizer, waves: list[np.ndarray]) -> dict:
    secs = sum(len(w) for w in waves) / 16000
    t0 = time.perf_counter()
    units = [tokenizer.encode(w) for w in waves]
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    audio = [tokenizer.decode(u) for u in units]
    t_dec = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    stream_ok, lag_units = True, 0.0
    for w, u, a in zip(waves[:4], units[:4], audio[:4]):
        enc, parts, i = tokenizer.stream_encoder(), [], 0
        while i < len(w):
            k = int(rng.integers(160, 4000))
            parts.append(enc.feed(w[i:i + k]))
            i += k
        su = np.concatenate(parts + [enc.flush()])[: len(w) // tokenizer.hop_samples]
        dec, outs, fed = tokenizer.stream_decoder(), [], 0
        for j in range(0, len(u), 3):
            outs.append(dec.feed(u[j:j + 3]))
            fed = min(j + 3, len(u))
            lag_units = max(lag_units, (fed * tokenizer.hop_samples - sum(map(len, outs))) / tokenizer.hop_samples)
        sa = np.concatenate(outs + [dec.flush()])
        stream_ok &= bool(np.array_equal(su, u) and np.array_equal(sa, a))
    return {"encode_rtf": round(t_enc / secs, 4), "decode_rtf": round(t_dec / secs, 4),
            "encode_plus_decode_rtf": round((t_enc + t_dec) / secs, 4), "stream_equals_batch": stream_ok,
            "decoder_latency_units": round(lag_units, 3), "speed_audio_s": round(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default="pretrained:phone-units")
    ap.add_argument("--sentences", type=int, default=30)
    ap.add_argument("--baseline-units", type=int, default=1024, help="mel k-means baseline codebook (0 = skip)")
    a = ap.parse_args()
    from omni.asr import WhisperASR
    from omni.speech_tokenizer import MelKMeansTokenizer, load_speech_tokenizer

    t_start = time.time()
    tok = load_speech_tokenizer(a.tokenizer)
    asr = WhisperASR(cpu_threads=2)
    from omni.pretrained import resolve_path
    seen = training_texts(resolve_path(a.tokenizer))
    texts = test_texts(a.sentences, exclude=seen)
    res_seen = len(seen)
    espeak = voice_set(texts, "espeak", HELDOUT_VOICES, seed=1)
    piper = voice_set(texts[: max(6, a.sentences // 2)], "piper", ("joe", "joe-low", "joe-brisk"), seed=2)
    res: dict = {"tokenizer": tok.kind, "num_units": tok.num_units, "frame_rate_hz": tok.frame_rate_hz,
                 "sentences": len(texts), "training_sentences_excluded": res_seen, "heldout_voices": list(HELDOUT_VOICES)}
    res["heldout_espeak"] = round_trip_wer(tok, espeak, asr)
    print("held-out espeak voices:", {k: v for k, v in res["heldout_espeak"].items() if k != "examples"}, flush=True)
    res["piper_heldout_sentences"] = round_trip_wer(tok, piper, asr)
    print("Piper, held-out sentences:", {k: v for k, v in res["piper_heldout_sentences"].items() if k != "examples"},
          flush=True)
    res.update(speed(tok, [w for _, w in espeak[:10]]))
    if a.baseline_units:
        fit = voice_set(test_texts(200, seed=7)[:200], "espeak", FIT_VOICES, seed=3)
        base = MelKMeansTokenizer.fit([w for _, w in fit], a.baseline_units, 0)
        res["baseline_mel_kmeans"] = {"num_units": a.baseline_units, **{k: v for k, v in round_trip_wer(
            base, espeak, asr).items() if k != "examples"}}
        print("baseline mel k-means:", res["baseline_mel_kmeans"], flush=True)
    e = res["heldout_espeak"]
    judge(res, "round_trip_wer_heldout_voices", "<=", 0.25, e["wer_round_trip"])
    judge(res, "round_trip_over_original_ratio_heldout_voices", "<=", 1.5, e["round_trip_over_original_ratio"])
    judge(res, "encode_plus_decode_rtf", "<=", 0.05)
    judge(res, "decoder_latency_units", "<=", 2)
    judge(res, "stream_equals_batch", "==", True)
    res["wall_s"] = round(time.time() - t_start, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
