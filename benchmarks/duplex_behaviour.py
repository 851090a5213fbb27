"""Full-Duplex-Bench behaviour of the tiny curriculum model vs two trivial baselines, same run.

    python benchmarks/duplex_behaviour.py [--checkpoint outputs/tiny/checkpoints/final]
        [--per-task 4] [--seed 1009] [--out DIR] [--asr] [--ray]

Makes the four synthetic task sets (``data_prep.fdb_tasks``: pause handling, backchannel,
smooth turn-taking, user interruption), runs time-synchronous inference
(``omni.fdb_infer`` in this process; ``--ray``: the ``jobs.duplex_infer`` Ray Data job) for three
policies on the same clips - the model, ``baseline:silent`` (never speaks) and ``baseline:vad200``
(speaks whenever the user has been silent 200 ms) - and scores all three with
``omni.metrics.fdb.fdb_report`` (Silero voice activity, as the benchmark; ``--asr`` adds word
timings from ``omni.asr`` when installed). Prints the table next to the published v1.0 rows,
then a JSON object as the last line. The checkpoint is the export ``make demo`` writes; it is
not trained here (too slow for a benchmark): a missing one is an error that says so.
Bounded: about 3 minutes of audio per policy at --per-task 4 (measured: tiny model RTF 0.09,
whole run 63 s on the shared 2-core machine; both grow with machine load).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from data_prep.fdb_tasks import HELDOUT_SEED, baseline_voice, write_task_sets
from omni import fdb_infer
from omni.metrics import fdb

DEFAULT_CKPT = "outputs/tiny/checkpoints/final"
FIELDS = {  # JSON key suffix -> (task, aggregate field)
    "pause_tor_rate": ("pause_handling", "tor"),
    "backchannel_tor_rate": ("backchannel", "tor"),
    "backchannel_freq_hz": ("backchannel", "freq_hz"),
    "backchannel_jsd": ("backchannel", "jsd"),
    "turn_taking_tor_rate": ("smooth_turn_taking", "tor"),
    "turn_taking_latency_s": ("smooth_turn_taking", "latency_s"),
    "interruption_tor_rate": ("user_interruption", "tor"),
    "interruption_latency_s": ("user_interruption", "latency_s"),
    "interruption_stop_latency_s": ("user_interruption", "stop_latency_s"),
    "interruption_response_latency_s": ("user_interruption", "response_latency_s"),
}


def _copy_inputs(src: Path, dst: Path) -> None:
    for f in src.rglob("*"):
        if f.name in ("input.wav", "metadata.json"):
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def infer(spec: str, folder: Path, ray: bool) -> dict:
    """Run ``spec`` over ``folder``: in this process, or as the Ray Data job (a subprocess)."""
    if ray:
        r = subprocess.run([sys.executable, "-m", "jobs.duplex_infer", "--checkpoint", spec, "--input-dir",
                            str(folder), "--actors", "2"], cwd=ROOT, capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])
    voice = baseline_voice() if spec == "baseline:vad200" else None
    runner = fdb_infer.Runner(spec, baseline_voice=voice)
    return fdb_infer.run_clips(runner, fdb_infer.find_inputs(folder), {})


def _round(v):
    return v if v is None or isinstance(v, int) else round(float(v), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=DEFAULT_CKPT, help="export folder or models:/NAME@ALIAS")
    ap.add_argument("--per-task", type=int, default=4)
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED)
    ap.add_argument("--out", default=None, help="keep clips and outputs here (default: a temp folder)")
    ap.add_argument("--asr", action="store_true", help="add word timings from omni.asr (if installed)")
    ap.add_argument("--ray", action="store_true", help="run inference as the Ray Data job instead of in-process")
    a = ap.parse_args(argv)
    ckpt = a.checkpoint
    if not ckpt.startswith("models:/") and not (Path(ckpt) / "export.json").exists():
        print(f"error: no model export at {ckpt}: run `make demo` first (it writes {DEFAULT_CKPT}) "
              "or pass --checkpoint PATH|models:/NAME@ALIAS", file=sys.stderr)
        return 2
    asr = fdb.default_asr() if a.asr else None
    if a.asr and asr is None:
        print("warning: --asr given but omni.asr.WhisperASR is not available (faster-whisper or its model "
              "missing); using voice activity only", file=sys.stderr)
    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="fdb_bench_"))
    t0 = time.perf_counter()
    write_task_sets(root / "inputs", a.per_task, a.seed)
    gen_s = time.perf_counter() - t0
    policies = {"model": ckpt, "silent": "baseline:silent", "vad200": "baseline:vad200"}
    reports, runs = {}, {}
    for name, spec in policies.items():
        d = root / name
        _copy_inputs(root / "inputs", d)
        runs[name] = infer(spec, d, a.ray)
        reports[name] = fdb.fdb_report(d, asr=asr, model_name=name)
    rows = {("omni tiny (ours)" if k == "model" else f"baseline: {k}"): r["row"] for k, r in reports.items()}
    print(fdb.fdb_markdown(rows))
    print()
    for name, r in reports.items():
        print(f"{name}: " + json.dumps({t: {k: _round(v) for k, v in agg.items()} for t, agg in r["tasks"].items()}))
    out: dict = {"clips_per_task": a.per_task, "clips_total": 4 * a.per_task,
                 "audio_per_policy_s": runs["model"]["audio_s"], "taskgen_s": round(gen_s, 2),
                 "model_rtf": runs["model"]["rtf"], "model_infer_wall_s": runs["model"]["wall_s"],
                 "transcripts": asr is not None}
    for name, r in reports.items():
        for key, (task, field) in FIELDS.items():
            out[f"{name}_{key}"] = _round(r["tasks"].get(task, {}).get(field))
    same = lambda other: all(out[f"model_{k}"] == out[f"{other}_{k}"] for k in FIELDS)
    out["model_identical_to_silent"] = same("silent")
    out["model_identical_to_vad200"] = same("vad200")
    for k in ("pause_tor_rate", "turn_taking_tor_rate", "interruption_tor_rate"):
        m, v = out[f"model_{k}"], out[f"vad200_{k}"]
        out[f"model_minus_vad200_{k}"] = None if m is None or v is None else round(m - v, 4)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    if not a.out:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
