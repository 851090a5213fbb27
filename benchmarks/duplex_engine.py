"""Streaming duplex engine on one core: real-time factor, latency growth over a long call, batching.

    python benchmarks/duplex_engine.py [--export DIR] [--minutes 5] [--threads 1]

Measured in one run on the tiny export (random weights; built on the fly unless --export):
- rtf_per_session: wall time / audio time while one session takes 20 ms frames (encoder +
  model + decoder). Goal <= 0.1. rtf_cpu_*: the same with this process's CPU time (what one
  core costs when the machine is shared with other jobs; wall time then overstates it).
- chunk latency (wall time of the feed() call that completes a chunk: encode + step + decode),
  p50 over the first 10 s of the call vs over the last 10 s after --minutes of conversation, with
  the default rolling window (serve.kv_window=2048). Goal: ratio <= 1.5.
  The same ratio in thread CPU time (cpu_ratio_late_vs_early) is robust to other jobs on the machine.
- step_batch cost for 1/4/8 sessions (ms per batched step and per session).
Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _goals import ENGINE_RTF_GOAL, judge  # benchmarks/_goals.py: a script's folder is on sys.path
from omni.config import ServeConfig
from omni.duplex import DuplexEngine
from serve_app.tiny_export import build_tiny_export, demo_wave

FRAME = 320                       # 20 ms at 16 kHz


def long_call(engine: DuplexEngine, seconds: float) -> dict:
    wave = np.tile(demo_wave(30.0, seed=1), int(np.ceil(seconds / 30)))[: int(seconds * 16000)]
    lat_ms, cpu_ms, ctx = [], [], []
    t0, c0 = time.perf_counter(), time.process_time()
    with engine.session() as s:
        for i in range(0, wave.size, FRAME):
            before = s.chunk_index
            t, tc = time.perf_counter(), time.thread_time()
            s.feed(wave[i:i + FRAME])
            if s.chunk_index > before:
                lat_ms.append((time.perf_counter() - t) * 1000)
                cpu_ms.append((time.thread_time() - tc) * 1000)
                ctx.append(s.context_tokens)
        reprefills = s.reprefills
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_10s = int(10_000 / engine.chunk_ms)
    return {"wall_s": wall, "cpu_s": cpu, "audio_s": wave.size / 16000, "lat_ms": lat_ms, "cpu_ms": cpu_ms, "ctx": ctx,
            "per_10s": per_10s, "reprefills": reprefills}


def batch_cost(engine: DuplexEngine, sizes=(1, 4, 8), steps: int = 10) -> dict:
    out = {}
    chunk = demo_wave(engine.chunk_ms / 1000 * steps + 0.1, seed=2)
    n = int(engine.chunk_ms / 1000 * 16000)
    for b in sizes:
        sessions = [engine.session(seed=i) for i in range(b)]
        times = []
        for k in range(steps):
            for s in sessions:
                s.push(chunk[k * n:(k + 1) * n])
            t = time.perf_counter()
            engine.step_batch(sessions)
            times.append((time.perf_counter() - t) * 1000)
        for s in sessions:
            s.close()
        med = float(np.median(times[2:]))
        out[b] = {"step_ms": med, "per_session_ms": med / b}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", default=None)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        export = a.export or build_tiny_export(Path(tmp) / "export")
        engine = DuplexEngine(export, ServeConfig())
        engine.warmup()
        short = long_call(engine, 10.0)
        call = long_call(engine, a.minutes * 60 + 10)
        batches = batch_cost(engine)
    k = call["per_10s"]
    first, last = call["lat_ms"][:k], call["lat_ms"][-k:]
    p50_first, p50_last = float(np.median(first)), float(np.median(last))
    result = {
        "rtf_per_session": round(short["wall_s"] / short["audio_s"], 4),
        "rtf_cpu_per_session": round(short["cpu_s"] / short["audio_s"], 4),
        "rtf_long_call": round(call["wall_s"] / call["audio_s"], 4),
        "rtf_cpu_long_call": round(call["cpu_s"] / call["audio_s"], 4),
        "chunk_ms_audio": engine.chunk_ms,
        "chunk_latency_ms_p50_first_10s": round(p50_first, 3),
        "chunk_latency_ms_p50_after_minutes": round(p50_last, 3),
        "chunk_latency_ms_p99_after_minutes": round(float(np.percentile(last, 99)), 3),
        "chunk_latency_ms_max_whole_call": round(float(np.max(call["lat_ms"])), 3),
        "latency_ratio_late_vs_early": round(p50_last / p50_first, 3),
        "chunk_cpu_ms_p50_first_10s": round(float(np.median(call["cpu_ms"][:k])), 3),
        "chunk_cpu_ms_p50_after_minutes": round(float(np.median(call["cpu_ms"][-k:])), 3),
        "cpu_ratio_late_vs_early": round(float(np.median(call["cpu_ms"][-k:]) / np.median(call["cpu_ms"][:k])), 3),
        "call_minutes": a.minutes,
        "context_tokens_max": int(max(call["ctx"])),
        "kv_window_tokens": engine.cfg.kv_window,
        "reprefills": call["reprefills"],
        "threads": a.threads,
        **{f"batch{b}_step_ms": round(v["step_ms"], 3) for b, v in batches.items()},
        **{f"batch{b}_per_session_ms": round(v["per_session_ms"], 3) for b, v in batches.items()},
    }
    judge(result, "rtf_per_session", "<=", ENGINE_RTF_GOAL)
    judge(result, "latency_ratio_late_vs_early", "<=", 1.5)
    print(f"chunks: first 10 s p50 {p50_first:.2f} ms, after {a.minutes} min p50 {p50_last:.2f} ms; "
          f"RTF {result['rtf_per_session']}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
