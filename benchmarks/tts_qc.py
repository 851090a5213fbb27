"""TTS backends on the same scripts: ShareChatX QC pass rate (Whisper base), speed, word timings.

    python benchmarks/tts_qc.py [--dialogues 20] [--seed 9001] [--backends espeak piper]
                                [--max-wer 0.05] [--threads 2] [--budget-s 1200]

The template writer's scripts for dialogues 0..N-1 of ``--seed`` (a seed the data sets do not
use); every turn keeps its emotion / pitch / speed tags and is voiced by each backend, with a
voice drawn per (dialogue, speaker) from that backend's own pool (``user_voices`` /
``assistant_voices``), exactly as ``generate_dialogue`` draws it. Whisper base
(:class:`omni.asr.WhisperASR`, int8) transcribes each clean utterance; the QC pass rate is the
fraction of turns with WER <= ``--max-wer`` (ShareChatX's 5 %, :func:`data_prep.synth.qc.wer`),
and a dialogue passes when all its turns do (what ``synth.qc_max_wer`` keeps).

Speed: audio seconds / synthesis seconds in this process (``x_realtime``), after warm-up
utterances per backend (model load, librosa's first call). Word timings, two ways: (1) at every
pause the backend claims (>= 80 ms between two words), the error of the word edges against the
audio's own energy edges (:func:`pause_edge_errors`); (2) on utterances that Whisper heard
exactly, the median |difference| from Whisper's word timestamps -- Whisper's own error dominates
that figure (its words abut: a start is the previous word's end, pauses included), so it
compares backends, it does not measure either. JSON on the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from data_prep.synth.generate import dialogue_rngs, write_script  # noqa: E402
from data_prep.synth.qc import normalize_text, wer  # noqa: E402
from data_prep.synth.tts import ASSISTANT_VOICES, USER_VOICES, get_tts  # noqa: E402
from omni.asr import WhisperASR  # noqa: E402
from omni.config import SynthConfig  # noqa: E402


def pause_edge_errors(wave: np.ndarray, words, gap_s: float = 0.08, thresh_db: float = -35.0,
                      frame_s: float = 0.005) -> list[float]:
    """Where a backend says two words have a pause between them (>= ``gap_s``), the signed errors
    (s) of the first word's end and of the second word's start against the audio's pause: the
    longest run of 5 ms frames below ``thresh_db`` (re the loudest frame) within 0.1 s around the
    claimed pause."""
    hop = int(16000 * frame_s)
    n = len(wave) // hop
    env = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    quiet = 20 * np.log10(env / env.max()) <= thresh_db
    errs = []
    for w, nxt in zip(words, words[1:]):
        if nxt.start_s - w.end_s < gap_s:
            continue
        a, b = max(int((w.end_s - 0.1) / frame_s), 0), min(int((nxt.start_s + 0.1) / frame_s), n)
        best, run = (0, 0), None
        for i in range(a, b + 1):
            if i < b and quiet[i]:
                run = i if run is None else run
            elif run is not None:
                best = max(best, (i - run, run), key=lambda r: r[0])
                run = None
        if best[0] == 0:
            continue
        length, start = best
        errs += [start * frame_s - w.end_s, (start + length) * frame_s - nxt.start_s]
    return errs


def timing_errors(words, heard) -> tuple[list[float], list[float]]:
    """|start| and |end| differences (s) word by word, when both give the same normalised words."""
    ours = [normalize_text(w.text) for w in words]
    theirs = [normalize_text(w.text) for w in heard]
    if not ours or ours != theirs or any(" " in o or not o for o in ours):
        return [], []
    return ([abs(a.start_s - b.start_s) for a, b in zip(words, heard)],
            [abs(a.end_s - b.end_s) for a, b in zip(words, heard)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dialogues", type=int, default=20)
    ap.add_argument("--seed", type=int, default=9001)
    ap.add_argument("--backends", nargs="+", default=["espeak", "piper"])
    ap.add_argument("--max-wer", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=1200.0)
    a = ap.parse_args()
    t_start = time.perf_counter()
    cfg = SynthConfig(seed=a.seed, interrupt_prob=0.0)
    scripts = [write_script(i, cfg, dialogue_rngs(i, a.seed)["script"], a.seed) for i in range(a.dialogues)]
    asr = WhisperASR(cpu_threads=a.threads)
    out: dict = {"benchmark": "tts_qc", "asr": "whisper-base-int8", "seed": a.seed, "qc_max_wer": a.max_wer,
                 "load_avg_1m": round(os.getloadavg()[0], 2)}
    for kind in a.backends:
        t0 = time.perf_counter()
        tts = get_tts(kind)
        users = getattr(tts, "user_voices", USER_VOICES)
        assistants = getattr(tts, "assistant_voices", ASSISTANT_VOICES)
        for v in (users[0], assistants[0]):  # model load, librosa's first pitch shift
            tts.synthesize("Warm up.", v)
        load_s = time.perf_counter() - t0
        synth_s = audio_s = asr_s = 0.0
        rows, d_start, d_end, edges = [], [], [], []
        for i, script in enumerate(scripts):
            if time.perf_counter() - t_start > a.budget_s:
                break
            rng = np.random.default_rng([a.seed, i, 17])
            voices = {"user": users[int(rng.integers(len(users)))],
                      "assistant": assistants[int(rng.integers(len(assistants)))]}
            for t in script.turns:
                t1 = time.perf_counter()
                sp = tts.synthesize(t.text, voices[t.speaker], t.emotion, t.pitch, t.speed)
                synth_s += time.perf_counter() - t1
                audio_s += sp.duration_s
                t1 = time.perf_counter()
                heard = asr.transcribe(sp.wave)
                asr_s += time.perf_counter() - t1
                hyp = " ".join(w.text for w in heard)
                w = wer(t.text, hyp)
                rows.append({"dialogue": i, "voice": voices[t.speaker], "emotion": t.emotion, "wer": w,
                             "ref": t.text, "hyp": hyp})
                edges += pause_edge_errors(sp.wave, sp.words)
                if w == 0:
                    s, e = timing_errors(sp.words, heard)
                    d_start += s
                    d_end += e
        wers = np.array([r["wer"] for r in rows])
        by_dialogue: dict[int, bool] = {}
        for r in rows:
            by_dialogue[r["dialogue"]] = by_dialogue.get(r["dialogue"], True) and r["wer"] <= a.max_wer
        res = {"turns": len(rows), "dialogues": len(by_dialogue), "audio_s": round(audio_s, 1),
               "load_s": round(load_s, 2), "synth_x_realtime": round(audio_s / max(synth_s, 1e-9), 1),
               "asr_x_realtime": round(audio_s / max(asr_s, 1e-9), 2),
               "qc_turn_pass_fraction": round(float(np.mean(wers <= a.max_wer)), 3),
               "qc_dialogue_pass_fraction": round(float(np.mean(list(by_dialogue.values()))), 3),
               "wer_mean": round(float(wers.mean()), 4),
               "qc_turn_pass_fraction_per_emotion": {
                   e: round(float(np.mean([r["wer"] <= a.max_wer for r in rows if r["emotion"] == e])), 3)
                   for e in sorted({r["emotion"] for r in rows})},
               "qc_turn_pass_fraction_per_voice": {
                   v: round(float(np.mean([r["wer"] <= a.max_wer for r in rows if r["voice"] == v])), 3)
                   for v in sorted({r["voice"] for r in rows})},
               "timing_pause_edges": len(edges),
               "timing_pause_edge_abs_error_median_ms": round(1000 * float(np.median(np.abs(edges))), 1)
               if edges else None,
               "timing_pause_edge_abs_error_p90_ms": round(1000 * float(np.percentile(np.abs(edges), 90)), 1)
               if edges else None,
               "timing_words_compared": len(d_start),
               "timing_start_vs_whisper_median_ms": round(1000 * float(np.median(d_start)), 1) if d_start else None,
               "timing_end_vs_whisper_median_ms": round(1000 * float(np.median(d_end)), 1) if d_end else None}
        for r in sorted(rows, key=lambda r: -r["wer"])[:3]:
            print(f"[{kind} {r['voice']}/{r['emotion']}] WER {r['wer']:.2f}: {r['ref']!r} -> {r['hyp']!r}")
        print(f"{kind}: {json.dumps(res)}")
        out[kind] = res
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
