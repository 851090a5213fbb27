"""Whisper base (faster-whisper, int8, CPU) on held-out synthetic espeak-ng speech.

    python benchmarks/asr.py [--per-voice 3] [--per-emotion 4] [--threads 2] [--max-wer 0.05]
                             [--export DIR] [--budget-s 240]

Held-out speech: template-writer sentences from a seed the data set never uses (seed 9001),
voiced by every user and assistant voice of the synthesiser (neutral style), then by two voices
in every emotion style. Reports, per voice and per emotion: WER (after omni.asr.normalize_for_wer)
and the QC pass fraction (utterance WER <= --max-wer, ShareChatX's 5 %), plus the real-time
factor (compute s / audio s). ``--export``: the project's aligned checkpoint on the same
speech, next to Whisper. Stops adding utterances after ``--budget-s``. JSON on the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from data_prep.synth.scripts import TemplateWriter  # noqa: E402
from data_prep.synth.tts import ASSISTANT_VOICES, USER_VOICES, _EMOTION, get_tts  # noqa: E402
from omni.asr import WhisperASR, corpus_wer, timed_transcribe, wer, words_text  # noqa: E402

HELDOUT_SEED = 9001


def heldout_sentences(n: int, seed: int = HELDOUT_SEED) -> list[str]:
    """``n`` distinct template sentences (4-25 words) from a seed the data set does not use."""
    rng, writer, out = np.random.default_rng(seed), TemplateWriter(), []
    while len(out) < n:
        for t in writer.write(rng, str(rng.choice(["chitchat", "emotion", "event"])), 4).turns:
            if 4 <= len(t.text.split()) <= 25 and t.text not in out:
                out.append(t.text)
    return out[:n]


def summarise(rows: list[dict], key: str, max_wer: float, hyp_key: str = "hyp") -> dict:
    out = {}
    for name in sorted({r[key] for r in rows}):
        rs = [r for r in rows if r[key] == name]
        out[name] = {"utterances": len(rs), "wer": round(corpus_wer([r["ref"] for r in rs], [r[hyp_key] for r in rs]), 4),
                     "pass_fraction": round(float(np.mean([wer(r["ref"], r[hyp_key]) <= max_wer for r in rs])), 3)}
    return out


def table(title: str, summary: dict) -> str:
    lines = [f"\n{title}", f"{'':<14} {'utts':>5} {'WER':>7} {'pass':>6}"]
    lines += [f"{k:<14} {v['utterances']:>5} {v['wer']:>7.3f} {v['pass_fraction']:>6.2f}" for k, v in summary.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-voice", type=int, default=3)
    ap.add_argument("--per-emotion", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-wer", type=float, default=0.05)
    ap.add_argument("--export", default=None, help="an omni export folder: its aligned ASR on the same speech")
    ap.add_argument("--budget-s", type=float, default=240.0)
    a = ap.parse_args()
    t_start = time.perf_counter()
    t0 = time.perf_counter()
    asr = WhisperASR(cpu_threads=a.threads)
    load_s = time.perf_counter() - t0
    own = None
    if a.export:
        from omni.asr import AlignedASR
        own = AlignedASR(a.export)
    tts = get_tts("espeak")
    voices = list(USER_VOICES) + list(ASSISTANT_VOICES)
    emotion_voices = [USER_VOICES[0], ASSISTANT_VOICES[0]]
    sents = heldout_sentences(max(a.per_voice * len(voices), a.per_emotion * len(_EMOTION)))
    jobs = []  # round k: every voice, then every emotion (a cut by --budget-s keeps all covered)
    for k in range(max(a.per_voice, a.per_emotion)):
        if k < a.per_voice:
            jobs += [(v, "neutral", sents[i * a.per_voice + k]) for i, v in enumerate(voices)]
        if k < a.per_emotion:
            jobs += [(emotion_voices[k % 2], e, sents[(j * a.per_emotion + k) % len(sents)])
                     for j, e in enumerate(_EMOTION) if e != "neutral"]
    rows, compute_s, audio_s, own_s = [], 0.0, 0.0, 0.0
    for voice, emotion, text in jobs:
        if time.perf_counter() - t_start > a.budget_s:
            break
        sp = tts.synthesize(text, voice=voice, emotion=emotion)
        words, rtf = timed_transcribe(asr, sp.wave, 16000)
        row = {"voice": voice, "emotion": emotion, "ref": text, "hyp": words_text(words)}
        compute_s += rtf * sp.duration_s
        audio_s += sp.duration_s
        if own is not None:
            t1 = time.perf_counter()
            row["own_hyp"] = own.transcribe_text(sp.wave, 16000)
            own_s += time.perf_counter() - t1
        rows.append(row)
    neutral = [r for r in rows if r["emotion"] == "neutral"]
    per_voice = summarise(neutral, "voice", a.max_wer)
    per_emotion = summarise([r for r in rows if r["voice"] in emotion_voices], "emotion", a.max_wer)
    print(table(f"Whisper base on held-out espeak-ng speech, per voice (neutral style; pass = WER <= {a.max_wer})",
                per_voice))
    print(table(f"per emotion style (voices {', '.join(emotion_voices)})", per_emotion))
    worst = sorted(rows, key=lambda r: -wer(r["ref"], r["hyp"]))[:3]
    for r in worst:
        print(f"  worst: [{r['voice']}/{r['emotion']}] {r['ref']!r} -> {r['hyp']!r}")
    refs, hyps = [r["ref"] for r in rows], [r["hyp"] for r in rows]
    import jiwer
    raw = float(jiwer.wer(refs, hyps))  # no normalisation at all: what the shared normaliser buys
    result = {"benchmark": "asr", "asr": "whisper-base-int8", "cpu_threads": a.threads, "utterances": len(rows),
              "voices": len(per_voice), "audio_s": round(audio_s, 1), "load_s": round(load_s, 2),
              "whisper_rtf": round(compute_s / max(audio_s, 1e-9), 3),
              "whisper_x_realtime": round(audio_s / max(compute_s, 1e-9), 2),
              "whisper_wer": round(corpus_wer(refs, hyps), 4), "whisper_wer_unnormalised": round(raw, 4),
              "qc_max_wer": a.max_wer,
              "qc_pass_fraction": round(float(np.mean([wer(r, h) <= a.max_wer for r, h in zip(refs, hyps)])), 3),
              "wer_per_voice": {k: v["wer"] for k, v in per_voice.items()},
              "qc_pass_fraction_per_voice": {k: v["pass_fraction"] for k, v in per_voice.items()},
              "wer_per_emotion": {k: v["wer"] for k, v in per_emotion.items()},
              "qc_pass_fraction_per_emotion": {k: v["pass_fraction"] for k, v in per_emotion.items()},
              "wall_s": round(time.perf_counter() - t_start, 1)}
    if own is not None:
        result.update({"own_wer": round(corpus_wer(refs, [r["own_hyp"] for r in rows]), 4),
                       "own_rtf": round(own_s / max(audio_s, 1e-9), 3),
                       "own_to_whisper_wer_ratio": round(corpus_wer(refs, [r["own_hyp"] for r in rows])
                                                         / max(result["whisper_wer"], 1e-9), 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
