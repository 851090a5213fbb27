"""Synthetic dialogue generator throughput per step, on one core.

    python benchmarks/synth.py [--dialogues 40] [--scripts 10000] [--scripts-only]

Steps: script (template writer + interruption plan), tts (espeak-ng, incl. 22.05->16 kHz
resampling and the per-utterance library reload that makes output byte-identical), duplex
(assembly + backchannels), scene (events, music, noise), qc (basic checks), plus the end-to-end
``generate_dialogue``. Reports dialogues/s and audio-seconds/s (x real time) per step, and
distinct-1/2/3, the exact-duplicate fraction and a near-duplicate fraction (word-5-gram Jaccard
>= 0.8 with another script, checked for 1000 sampled scripts) over ``--scripts`` template scripts
(``--scripts-only`` reports just these). JSON object on the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from data_prep.synth.duplex import assemble  # noqa: E402
from data_prep.synth.generate import (EVENT_GAP_S, SR, _event_clip, add_scene, dialogue_rngs,  # noqa: E402
                                      generate_dialogue, voice_script, write_script)
from _goals import judge  # benchmarks/_goals.py: a script's folder is on sys.path
from data_prep.synth.qc import run_qc  # noqa: E402
from omni.config import SynthConfig  # noqa: E402
from omni.metrics.text import distinct_n  # noqa: E402


def near_duplicates(texts: list[str], n: int = 5, thresholds=(0.5, 0.8), sample: int = 1000, seed: int = 0) -> dict:
    """Exact-duplicate fraction over all ``texts``, and for each threshold the fraction of a random
    ``sample`` of scripts whose word-``n``-gram Jaccard similarity with some *other* script is >= it
    (exact check: candidates are scripts sharing a shingle, found through an inverted index)."""
    shingles = []
    for t in texts:
        w = t.lower().split()
        shingles.append({hash(tuple(w[i:i + n])) for i in range(max(len(w) - n + 1, 1))})
    index: dict[int, list[int]] = {}
    for j, sh in enumerate(shingles):
        for h in sh:
            index.setdefault(h, []).append(j)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(texts), size=min(sample, len(texts)), replace=False)
    best = []
    for i in pick:
        a = shingles[i]
        shared: dict[int, int] = {}
        for h in a:
            for j in index[h]:
                if j != i:
                    shared[j] = shared.get(j, 0) + 1
        # Jaccard = |A & B| / (|A| + |B| - |A & B|)
        best.append(max((c / (len(a) + len(shingles[j]) - c) for j, c in shared.items()), default=0.0))
    out = {"exact_duplicate_fraction": round(1 - len(set(texts)) / len(texts), 4)}
    for th in thresholds:
        out[f"near_duplicate_fraction_j{n}_{th}"] = round(sum(b >= th for b in best) / len(best), 4)
    out[f"mean_max_jaccard_{n}gram"] = round(float(np.mean(best)), 4)
    return out


def script_diversity(n_scripts: int, cfg: SynthConfig) -> dict:
    """Distinct-1/2/3 and (near-)duplicate fractions over ``n_scripts`` template scripts (2-8 turns)."""
    t0 = time.perf_counter()
    texts = []
    for i in range(n_scripts):
        s = write_script(i, cfg.model_copy(update={"max_turns": 8}), dialogue_rngs(i, cfg.seed)["script"])
        texts.append(" ".join(tt.text for tt in s.turns))
    out = {"scripts_per_s": round(n_scripts / (time.perf_counter() - t0), 1), "script_set_size": n_scripts,
           "unique_script_fraction": round(len(set(texts)) / len(texts), 4)}
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = round(distinct_n(texts, n), 4)
    out.update(near_duplicates(texts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dialogues", type=int, default=40)
    ap.add_argument("--scripts", type=int, default=10000)
    ap.add_argument("--scripts-only", action="store_true", help="only the script diversity figures (fast)")
    args = ap.parse_args()
    cfg = SynthConfig()
    if args.scripts_only:
        print(json.dumps(script_diversity(args.scripts, cfg)))
        return
    t = {k: 0.0 for k in ("script", "tts", "duplex", "scene", "qc")}
    audio_s = 0.0
    generate_dialogue(0, cfg)  # warm-up: library load, first-call costs
    for i in range(args.dialogues):
        r = dialogue_rngs(i, cfg.seed)
        t0 = time.perf_counter()
        script = write_script(i, cfg, r["script"], cfg.seed)
        t1 = time.perf_counter()
        voiced, bc, _, _ = voice_script(script, cfg, r["voice"])
        t2 = time.perf_counter()
        clips = {k: _event_clip(tt.event, cfg, r["scene"]) for k, tt in enumerate(script.turns) if tt.event}
        mix = assemble(voiced, r["duplex"], pause_mean_s=cfg.pause_mean_s, pause_std_s=cfg.pause_std_s,
                       backchannel_prob=cfg.backchannel_prob, backchannel_tts=bc,
                       min_pause_before_s={k: len(c) / SR + EVENT_GAP_S for k, (c, _) in clips.items()})
        t3 = time.perf_counter()
        main_idx = [k for k, tt in enumerate(mix["turns"]) if tt["kind"] == "turn"]
        add_scene(mix, script, cfg, r["scene"], {main_idx[k]: c for k, c in clips.items()})
        t4 = time.perf_counter()
        run_qc({"meta": {"turns": mix["turns"], "sample_rate_hz": SR}, "user": mix["user"], "assistant": mix["assistant"]})
        t5 = time.perf_counter()
        for k, a, b in (("script", t0, t1), ("tts", t1, t2), ("duplex", t2, t3), ("scene", t3, t4), ("qc", t4, t5)):
            t[k] += b - a  # backchannel TTS is counted in duplex
        audio_s += mix["duration_s"]
    t0 = time.perf_counter()
    e2e_audio = sum(generate_dialogue(i, cfg)["meta"]["duration_s"] for i in range(args.dialogues))
    e2e = time.perf_counter() - t0
    out = {"dialogues": args.dialogues, "audio_s": round(audio_s, 1), "cores": 1}
    for k, v in t.items():
        out[f"{k}_dialogues_per_s"] = round(args.dialogues / v, 1)
        out[f"{k}_x_realtime"] = round(audio_s / v, 1)
    out["e2e_dialogues_per_s"] = round(args.dialogues / e2e, 2)
    out["e2e_x_realtime"] = round(e2e_audio / e2e, 1)
    judge(out, "e2e_x_realtime", ">=", 50)
    out["tts_share_of_e2e"] = round(t["tts"] / sum(t.values()), 3)
    out.update(script_diversity(args.scripts, cfg))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
