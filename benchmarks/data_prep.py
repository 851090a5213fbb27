"""Data-prep throughput with 1 and 2 CPUs, and peak memory at 1x and 4x input (issue 6).

Input: ``--rows`` synthetic dialogues (default: espeak-ng TTS + duplex assembly inside the read
step, the CPU-heavy case) or a generated manifest corpus of utterances (``--source manifest``:
22.05 kHz WAV decoded, checked, resampled, tokenized, FLAC-encoded: light rows, where Ray's
fixed per-run costs dominate small runs). The tokenizers are fitted once (not timed), then:

* runs the Ray Data pipeline on a fresh local Ray with ``num_cpus=1`` and with ``num_cpus=2``
  (read tasks = CPUs, one tokenizer actor: the same fixed start-up cost in both, and the
  read step is the heavy one) over the same input, each after an untimed 2-row
  warm-up run on the same Ray (worker start-up and imports): rows/s, audio-seconds/s, and
  the speed-up (goal >= 1.7x);
* runs it (2 CPUs) over 1x and 4x the rows: peak RSS of the whole job (driver + raylet +
  every Ray worker, sampled every 0.1 s; GCS and the object store's shared memory are in the
  workers' RSS when mapped) (goal: bounded, ratio 4x/1x < 1.5).

    python benchmarks/data_prep.py [--source synthetic|manifest] [--rows 64] [--seconds 3] [--shard-rows 4]

Each run's Ray is pinned to its number of cores (``sched_setaffinity``, inherited by raylet and
workers). Speed-up needs two idle cores: ``cpu_count`` and ``load_avg_1m`` are reported with it.
The last line printed is a JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _goals import judge  # benchmarks/_goals.py: a script's folder is on sys.path
from data_prep import pipeline as P
from data_prep.sources import fixtures as F
from omni.config import SourceConfig, load_config


class PeakRSS:
    """Samples the summed RSS of this process and all its descendants in a thread."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s, self.peak_bytes, self._stop = interval_s, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me] + me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def start_ray(cpus: int, attempts: int = 3) -> None:
    """A private local Ray with the repo on the workers' path. Its raylet gets a fixed 30 s to
    register, which a busy machine can miss: that start-up error is retried."""
    import ray

    for attempt in range(attempts):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
            return
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            if attempt == attempts - 1 or "timed out during startup" not in str(e):
                raise


def make_cfg(work: Path, source: str, rows: int, seconds: float, shard_rows: int, name: str, cpus: int):
    cfg = load_config(ROOT / "configs/tiny.yaml", [
        f"data.output_dir={work / name}", f"data.shard_max_samples={shard_rows}", "data.heldout_fraction=0.1",
        f"data.synth_parallelism={cpus}", "data.tokenize_actors=1", f"synth.num_dialogues={rows}"])
    if source == "manifest":
        corpus = work / f"corpus-{rows}"
        if not corpus.exists():
            F.make_manifest(corpus, n=rows, seconds=seconds)
        cfg.data.sources = [SourceConfig(kind="manifest", name="man", path=str(corpus / "manifest.jsonl"))]
    return cfg


def timed_run(cfg, cpus: int, tokenizers: Path, warmup_cfg) -> dict:
    """Fresh local Ray with ``cpus``; an untimed warm-up run (worker start-up, imports), then the timed one."""
    import ray

    for c in (cfg, warmup_cfg):
        shutil.copytree(tokenizers, Path(c.data.output_dir) / "tokenizers")
    # Ray's num_cpus only limits scheduling: pin the driver (raylet and workers inherit it) to
    # ``cpus`` cores so that "1 CPU" really is one core
    all_cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(all_cores)[:cpus])
    start_ray(cpus)
    try:
        P.run(warmup_cfg, progress=False)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            m = P.run(cfg, progress=False)
            dt = time.perf_counter() - t0
    finally:
        ray.shutdown()
        os.sched_setaffinity(0, all_cores)
    rows = sum(s["read"] for s in m["sources"].values())
    audio_s = sum(s["hours"] for s in m["sources"].values()) * 3600
    return {"seconds": dt, "rows": rows, "rows_per_s": rows / dt, "audio_s_per_s": audio_s / dt,
            "peak_rss_mb": mem.peak_bytes / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=("synthetic", "manifest"), default="synthetic",
                    help="synthetic: espeak-ng dialogues generated in the read step (CPU-heavy rows); "
                         "manifest: generated WAV utterances (decode/resample/tokenize only)")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0, help="utterance length (manifest)")
    ap.add_argument("--shard-rows", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fit_cfg = make_cfg(work, args.source, args.rows, args.seconds, args.shard_rows, "fit", 1)
        tok = P.fit_tokenizers(fit_cfg, Path(fit_cfg.data.output_dir))
        tokenizers = Path(tok["speech_dir"]).parent
        runs = {}
        for name, rows, cpus in (("cpu1", args.rows, 1), ("cpu2", args.rows, 2), ("x4", 4 * args.rows, 2)):
            warm = make_cfg(work, args.source, 2, args.seconds, args.shard_rows, f"warmup-{name}", cpus)
            runs[name] = timed_run(make_cfg(work, args.source, rows, args.seconds, args.shard_rows, name, cpus), cpus,
                                   tokenizers, warm)
        r1, r2, r4 = runs["cpu1"], runs["cpu2"], runs["x4"]
    result = {
        "benchmark": "data_prep", "source": args.source, "rows_1x": args.rows,
        "utterance_s": args.seconds if args.source == "manifest" else None, "shard_rows": args.shard_rows,
        "rows_per_s_1cpu": round(r1["rows_per_s"], 2), "rows_per_s_2cpu": round(r2["rows_per_s"], 2),
        "audio_s_per_s_1cpu": round(r1["audio_s_per_s"], 2), "audio_s_per_s_2cpu": round(r2["audio_s_per_s"], 2),
        "speedup_2cpu_over_1cpu": round(r2["rows_per_s"] / r1["rows_per_s"], 2),
        "wall_s_1cpu": round(r1["seconds"], 1), "wall_s_2cpu": round(r2["seconds"], 1),
        "peak_rss_mb_1x": round(r2["peak_rss_mb"]), "peak_rss_mb_4x": round(r4["peak_rss_mb"]),
        "rss_ratio_4x_over_1x": round(r4["peak_rss_mb"] / r2["peak_rss_mb"], 2),
        "rows_per_s_2cpu_4x": round(r4["rows_per_s"], 2),
        "cpu_count": os.cpu_count(), "cores_pinned": True, "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    judge(result, "speedup_2cpu_over_1cpu", ">=", 1.7)
    judge(result, "rss_ratio_4x_over_1x", "<", 1.5)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
