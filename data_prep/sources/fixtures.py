"""Tiny generated corpora in each source layout (tests and benchmarks; no downloads).

Audio is a few voiced-like tones with an amplitude envelope, so that the speech tokenizer
has structure to fit; ``bad=True`` adds one row of every kind of bad input to the manifest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ["hello", "there", "how", "are", "you", "doing", "today", "i", "am", "fine", "thanks", "what", "about", "the", "weather", "it", "looks", "like", "rain", "later", "we", "should", "go", "out", "for", "a", "walk", "before", "dinner", "maybe"]


def tone(seconds: float, seed: int, sr_hz: int = 22050, channels: int = 1) -> np.ndarray:
    """A harmonic tone with a syllable-like envelope, peak 0.5, float32 ``(frames,)`` or ``(frames, ch)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr_hz)
    t = np.arange(n) / sr_hz
    out = []
    for c in range(channels):
        f0 = rng.uniform(90, 220)
        w = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
        w = w * env + 0.01 * rng.standard_normal(n)
        out.append(0.5 * w / max(1e-9, np.abs(w).max()))
    x = np.stack(out, axis=1).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def sentence(seed: int, n: int = 6) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=n))


def make_manifest(root: Path, n: int = 6, seconds: float = 1.5, bad: bool = False, seed: int = 0) -> Path:
    """``root/manifest.jsonl`` + ``root/audio/*.wav`` (22.05 kHz); returns the manifest path.

    With ``bad``, appends one row per reject code; their expected codes are in
    ``root/expected_rejects.json`` (``{line_number: code}``)."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows: list = []
    for i in range(n):
        sf.write(audio / f"u{i:04d}.wav", tone(seconds, seed + i), 22050)
        rows.append({"audio": f"audio/u{i:04d}.wav", "text": sentence(seed + i), "speaker": f"s{i % 2}",
                     "emotion": ["neutral", "happy", "sad"][i % 3]})
    expected = {}
    if bad:
        good = tone(seconds, 99)
        full = (audio / "u0000.wav").read_bytes()
        (audio / "truncated.wav").write_bytes(full[: len(full) // 2])
        (audio / "empty.wav").write_bytes(b"")
        (audio / "text.wav").write_text("this is not audio at all, just text\n" * 4)
        sf.write(audio / "zero.wav", np.zeros(0, np.float32), 16000)
        nan = good.copy()
        nan[100:110] = np.nan
        sf.write(audio / "nan.wav", nan, 22050, subtype="FLOAT")
        clip = np.clip(good * 8, -1, 1)
        sf.write(audio / "clip.wav", clip, 22050)
        sf.write(audio / "short.wav", tone(0.05, 7), 22050)
        sf.write(audio / "long.wav", tone(4.0, 8), 8000)
        (root.parent / "outside.wav").write_bytes(full)
        bad_rows = [
            ({"audio": "audio/truncated.wav", "text": "truncated file"}, "truncated"),
            ({"audio": "audio/empty.wav", "text": "empty file"}, "empty_file"),
            ({"audio": "audio/text.wav", "text": "not audio"}, "not_audio"),
            ({"audio": "audio/missing.wav", "text": "missing file"}, "unreadable"),
            ({"audio": "audio/zero.wav", "text": "no samples"}, "zero_length"),
            ({"audio": "audio/nan.wav", "text": "nan samples"}, "nan_inf"),
            ({"audio": "audio/clip.wav", "text": "clipped audio"}, "clipping"),
            ({"audio": "audio/short.wav", "text": "too short"}, "duration"),
            ({"audio": "audio/long.wav", "text": "too long"}, "duration"),
            ({"audio": "audio/u0001.wav"}, "missing_transcript"),
            ({"audio": "audio/u0001.wav", "text": "   "}, "empty_transcript"),
            ({"audio": "audio/u0001.wav", "text": "odd label", "emotion": "bored"}, "unknown_emotion"),
            ({"audio": "../outside.wav", "text": "escape"}, "path_outside_root"),
            ("{not json", "bad_row"),
        ]
        for row, code in bad_rows:
            rows.append(row)
            expected[len(rows)] = code
    path = root / "manifest.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    (root / "expected_rejects.json").write_text(json.dumps(expected))
    return path


def make_librispeech(root: Path, speakers: int = 2, chapters: int = 1, utts: int = 3, seconds: float = 1.2,
                     orphan: bool = False) -> Path:
    """``root/<spk>/<chap>/<spk>-<chap>.trans.txt`` + flac; ``orphan`` adds a flac with no transcript."""
    for s in range(speakers):
        for c in range(chapters):
            d = root / str(100 + s) / str(10 + c)
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            for u in range(utts):
                uid = f"{100 + s}-{10 + c}-{u:04d}"
                sf.write(d / f"{uid}.flac", tone(seconds, s * 100 + c * 10 + u, sr_hz=16000), 16000)
                lines.append(f"{uid} {sentence(s * 100 + u).upper()}")
            (d / f"{100 + s}-{10 + c}.trans.txt").write_text("\n".join(lines) + "\n")
    if orphan:
        sf.write(root / "100" / "10" / "100-10-9999.flac", tone(seconds, 5, sr_hz=16000), 16000)
    return root


def make_dailytalk(root: Path, dialogues: int = 2, turns: int = 3, seconds: float = 1.0,
                   bad_emotion: bool = False) -> Path:
    """DailyTalk layout: ``root/data/<d>/<t>_<spk>_d<d>.wav|.txt`` + ``root/metadata.json``."""
    meta: dict = {}
    labels = ["none", "happiness", "sadness", "surprise"]
    for d in range(dialogues):
        folder = root / "data" / str(d)
        folder.mkdir(parents=True, exist_ok=True)
        meta[str(d)] = {}
        for t in range(turns):
            spk = t % 2
            name = f"{t}_{spk}_d{d}"
            sf.write(folder / f"{name}.wav", tone(seconds, d * 10 + t), 22050)
            (folder / f"{name}.txt").write_text(sentence(d * 10 + t) + "\n")
            emo = "boredom" if bad_emotion and d == dialogues - 1 and t == 0 else labels[(d + t) % len(labels)]
            meta[str(d)][str(t)] = {"text": sentence(d * 10 + t), "speaker": spk, "emotion": emo}
    (root / "metadata.json").write_text(json.dumps(meta))
    return root


def make_stereo(root: Path, n: int = 2, seconds: float = 3.0, timings: bool = True) -> Path:
    """``root/conv<i>.wav`` two channels (user speaks first half, assistant second) + ``.json`` timings."""
    root.mkdir(parents=True, exist_ok=True)
    sr = 24000
    for i in range(n):
        x = np.zeros((int(seconds * sr), 2), np.float32)
        half = x.shape[0] // 2
        x[: half - sr // 5, 0] = tone(half / sr - 0.2, i, sr_hz=sr)
        x[half:, 1] = tone((x.shape[0] - half) / sr, i + 50, sr_hz=sr)
        sf.write(root / f"conv{i}.wav", x, sr)
        if timings:
            h = half / sr
            (root / f"conv{i}.json").write_text(json.dumps({"turns": [
                {"speaker": "user", "start_s": 0.0, "end_s": round(h - 0.2, 3), "text": sentence(i)},
                {"speaker": "assistant", "start_s": round(h, 3), "end_s": seconds, "text": sentence(i + 50),
                 "emotion": "happy"}]}))
    return root
