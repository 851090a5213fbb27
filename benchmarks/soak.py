"""Soak: M concurrent duplex sessions against a local Serve app for a bounded time.

    .venv/bin/python benchmarks/soak.py [--sessions 8] [--minutes 10] [--session-s 30] [--model EXPORT]

Each of M clients streams ``--session-s`` of audio in real time over ``WS /v1/duplex``, then
reconnects, until the deadline (loopback only; the script stops by itself). Every 5 s the
replica's RSS and the machine's 1-minute load average are sampled. Reported: sessions completed,
errors and dropped sessions (closed with anything but 1000), playback underruns (100 ms
prebuffer), latency p50/p99 and underruns per 1-minute window, the replica's GC collections and
pauses and event-loop lag (``/healthz``), RSS over time and its growth after warm-up (the first
20 % of the run). Goals (issue 21): 0 underruns over the whole run, p99 chunk latency <= 100 ms
after warm-up (from the second minute on), RSS growth < 10 %, no error, no dropped session.
Writes ``benchmarks/results/soak.json`` and ``soak.png``; JSON last line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serve_latency import _health  # noqa: E402
from jobs._common import free_port, start_local_ray  # noqa: E402
from serve_app.client import stream_async  # noqa: E402
from serve_app.tiny_export import build_tiny_export, demo_wave  # noqa: E402


async def soak(base: str, sessions: int, seconds: float, session_s: float, t0: float) -> tuple[list, list]:
    import psutil

    done: list[dict] = []
    rss: list[tuple[float, float]] = []
    load: list[tuple[float, float]] = []
    deadline = t0 + seconds
    perf0 = time.perf_counter() - (time.time() - t0)      # perf_counter at t0

    async def client(i: int) -> None:
        await asyncio.sleep(0.05 * i)
        k = 0
        while time.time() + session_s < deadline:
            wave = demo_wave(session_s, seed=1000 * i + k)
            k += 1
            start = time.time()
            try:
                r = await stream_async(f"ws://{base}/v1/duplex", wave, realtime=True, timeout_s=session_s + 30)
            except Exception as e:  # noqa: BLE001 - an error is a result here
                r = {"latencies_ms": [], "close_code": None, "errors": [repr(e)], "underruns": 0}
            done.append({"client": i, "start_s": start - t0, "end_s": time.time() - t0, "lat": r["latencies_ms"],
                         "steps": [(st["at_s"] - perf0, st["latency_ms"]) for st in r.get("steps", [])],
                         "underrun_s": [u - perf0 for u in r.get("underrun_at_s", [])],
                         "close_code": r["close_code"], "errors": r["errors"], "underruns": r["underruns"]})

    async def sampler() -> None:
        pid = _health(base)["pid"]
        proc = psutil.Process(pid)
        while time.time() < deadline:
            load.append((time.time() - t0, os.getloadavg()[0]))
            try:
                rss.append((time.time() - t0, proc.memory_info().rss / 2 ** 20))
            except psutil.Error:
                pid = _health(base)["pid"]
                proc = psutil.Process(pid)
            await asyncio.sleep(5)

    await asyncio.gather(sampler(), *[client(i) for i in range(sessions)])
    return done, rss, load


def _plot(windows: list[dict], rss: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    t = [w["minute"] + 0.5 for w in windows]
    a.plot(t, [w["latency_ms_p50"] for w in windows], marker="o", label="p50")
    a.plot(t, [w["latency_ms_p99"] for w in windows], marker="o", label="p99")
    a.set(ylabel="chunk latency (ms)", title="Soak: latency and replica memory over time")
    a.legend()
    b.plot([x / 60 for x, _ in rss], [m for _, m in rss])
    b.set(xlabel="minutes", ylabel="replica RSS (MiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--session-s", type=float, default=30.0)
    ap.add_argument("--model", default=None, help="export folder (default: a tiny random-weight export)")
    ap.add_argument("--kv-window", type=int, default=None, help="serve.kv_window (default: the model's seq_len)")
    a = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("OMNI_API_TOKEN", None)
    import ray
    from ray import serve

    from serve_app.app import build_app

    port = free_port()
    base = f"127.0.0.1:{port}"
    start_local_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        with tempfile.TemporaryDirectory() as tmp:
            model = a.model or str(build_tiny_export(Path(tmp) / "export"))
            extra = {"kv_window": a.kv_window} if a.kv_window else {}
            serve.run(build_app({**extra, "model": model, "max_sessions_per_replica": a.sessions + 2,
                                 "idle_timeout_s": 30}),
                      name="omni", route_prefix="/")
            h0 = _health(base)
            t0 = time.time()
            done, rss, load = asyncio.run(soak(base, a.sessions, a.minutes * 60, a.session_s, t0))
            h1 = _health(base)
            final_sessions = h1["sessions"]
    finally:
        serve.shutdown()
        ray.shutdown()
    windows = []
    steps = [st for d in done for st in d["steps"]]
    unders = [u for d in done for u in d["underrun_s"]]
    for m in range(int(np.ceil(a.minutes))):
        lat = [x for t, x in steps if m * 60 <= t < (m + 1) * 60]
        if lat:
            windows.append({"minute": m, "steps": len(lat), "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
                            "latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
                            "underruns": sum(1 for u in unders if m * 60 <= u < (m + 1) * 60)})
    warm_lat = [x for t, x in steps if t >= 60]
    p99_after = round(float(np.percentile(warm_lat, 99)), 2) if warm_lat else None
    warm = [m for t, m in rss if t <= 0.2 * a.minutes * 60]
    late = [m for t, m in rss if t >= 0.8 * a.minutes * 60]
    growth = (np.mean(late) - warm[-1]) / warm[-1] if warm and late else None
    errors = sum(1 for d in done if d["errors"])
    dropped = sum(1 for d in done if d["close_code"] != 1000)
    underruns = int(sum(d["underruns"] for d in done))
    loads = [x for _, x in load]
    out_dir = REPO / "benchmarks" / "results"
    out_dir.mkdir(exist_ok=True)
    result = {"sessions": a.sessions, "minutes": a.minutes, "kv_window": h1.get("kv_window"),
              "sessions_completed": len(done), "errors": errors,
              "dropped_sessions": dropped, "underruns": underruns, "steps": len(steps),
              "latency_ms_p99_after_warmup": p99_after,
              "latency_ms_p50": round(float(np.percentile([x for _, x in steps], 50)), 2) if steps else None,
              "open_sessions_at_end": final_sessions, "windows": windows,
              "rss_mib_after_warmup": round(warm[-1], 1) if warm else None,
              "rss_mib_end": round(float(np.mean(late)), 1) if late else None,
              "rss_growth_ratio": round(float(growth), 4) if growth is not None else None,
              "replica_gc_collections": [y - x for x, y in zip(h0["gc"]["collections"], h1["gc"]["collections"])],
              "replica_gc_pause_ms_max": h1["gc"]["pause_ms_max"],
              "replica_loop_lag_ms": h1["loop_lag_ms"],
              "load_avg_1min_mean": round(float(np.mean(loads)), 2) if loads else None,
              "load_avg_1min_max": round(float(np.max(loads)), 2) if loads else None,
              "goal_underruns": "== 0", "goal_met_underruns": underruns == 0,
              "goal_latency_ms_p99_after_warmup": "<= 100",
              "goal_met_latency_ms_p99_after_warmup": p99_after is not None and p99_after <= 100,
              "goal_rss_growth_ratio": "< 0.1", "goal_met_rss_growth_ratio": growth is not None and growth < 0.10,
              "goal_errors": "== 0", "goal_met_errors": errors == 0,
              "goal_dropped_sessions": "== 0", "goal_met_dropped_sessions": dropped == 0,
              "load_avg_1min": round(os.getloadavg()[0], 2)}
    (out_dir / "soak.json").write_text(json.dumps({**result, "rss_series": rss, "load_series": load}, indent=1))
    _plot(windows, rss, out_dir / "soak.png")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
