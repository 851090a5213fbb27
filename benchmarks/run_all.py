"""`make bench`: run every benchmark script, collect each one's last-line JSON, write one table.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--timeout-s 900]

Writes ``benchmarks/results/latest.json`` (every figure, per benchmark, with exit status and
wall time) and ``benchmarks/results/latest.md`` (one row per figure, goals beside the
figures they judge). Goals are reported, not asserted: the exit status is non-zero only when a
benchmark crashed or printed no JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SKIP = {"run_all.py"}


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float, bool, str)) or v is None:
            out[key] = v
    return out


def goal_rows(name: str, res: dict) -> list[tuple[str, str, str, str]]:
    """(benchmark, figure, value, goal) rows: a ``goal_*``/``*_goal*`` key sits beside its figure."""
    flat = flatten(res)
    goals = {k: v for k, v in flat.items() if "goal" in k.rsplit(".", 1)[-1]}
    rows = []
    for k, v in flat.items():
        if k in goals:
            continue
        g = next((f"{gk.rsplit('.', 1)[-1]}={gv}" for gk, gv in goals.items()
                  if gk.rsplit(".", 1)[0] == k.rsplit(".", 1)[0] or k.rsplit(".", 1)[-1] in gk), "")
        rows.append((name, k, f"{v:.4g}" if isinstance(v, float) else str(v), g))
    for gk, gv in goals.items():
        if isinstance(gv, bool):
            rows.append((name, gk, "yes" if gv else "**no**", ""))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--timeout-s", type=float, default=900)
    a = ap.parse_args()
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    if a.only:
        scripts = [p for p in scripts if p.stem in a.only]
    results, failed = {}, []
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "PYTHONUNBUFFERED": "1"}
    for p in scripts:
        print(f"== {p.name}", flush=True)
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, str(p)], cwd=ROOT, capture_output=True, text=True,
                               timeout=a.timeout_s, env=env)
            out, rc = r.stdout, r.returncode
            err = r.stderr[-2000:]
        except subprocess.TimeoutExpired as e:
            out, rc, err = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1, \
                f"timed out after {a.timeout_s:.0f} s"
        res = last_json(out)
        results[p.stem] = {"exit_status": rc, "wall_s": round(time.time() - t0, 1), "result": res}
        if rc != 0 or res is None:
            failed.append(p.stem)
            results[p.stem]["error_tail"] = err
            print(f"   FAILED (exit {rc}): {err.strip().splitlines()[-1] if err.strip() else 'no JSON line'}",
                  flush=True)
        else:
            print(f"   {json.dumps(res)[:300]}", flush=True)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    meta = {"when_unix_s": time.time(), "machine": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    (out_dir / "latest.json").write_text(json.dumps({"meta": meta, "benchmarks": results}, indent=2))
    lines = ["# Benchmark results", "", f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{meta['cpus']} CPUs. Goals are reported, not asserted.", "",
             "| benchmark | figure | value | goal |", "|---|---|---|---|"]
    for name, r in results.items():
        if r["result"] is None:
            lines.append(f"| {name} | (crashed, exit {r['exit_status']}) | | |")
            continue
        for row in goal_rows(name, r["result"]):
            lines.append("| " + " | ".join(row) + " |")
    (out_dir / "latest.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'latest.json'} and {out_dir / 'latest.md'}")
    print(json.dumps({"benchmarks": len(results), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
