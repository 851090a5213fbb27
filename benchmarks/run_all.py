"""`make bench`: run every benchmark script, collect each one's last-line JSON, write one table.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--timeout-s 900]

Writes ``benchmarks/results/latest.json`` (every figure, per benchmark, with exit status and
wall time) and ``benchmarks/results/latest.md``: first every stated goal with its figure and
verdict (a missed goal shows **no**), then every other figure. A benchmark states a goal as
``NAME`` (the figure), ``goal_NAME`` (e.g. ``"<= 0.1"``) and ``goal_met_NAME`` (a bool), see
``benchmarks/_goals.py``; nested results and lists are flattened (``a.b``, ``rows.0.x``), so no
figure is dropped. Goals are reported, not asserted: the exit status is non-zero only when a
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
SKIP = {"run_all.py"}      # and helpers: files starting with "_"


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def flatten(d, prefix: str = "") -> dict:
    """Nested dicts and lists → ``{"a.b": v, "rows.0.x": v}``; a list of plain values stays one
    figure (compact JSON)."""
    out = {}
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v, separators=(",", ":"))
        else:
            out[key] = v
    return out


def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _split(key: str) -> tuple[str, str]:
    head, _, last = key.rpartition(".")
    return (head + "." if head else ""), last


def goal_rows(name: str, res: dict) -> tuple[list[tuple], list[tuple]]:
    """(goal rows ``(benchmark, figure, value, goal, met)``, other rows ``(benchmark, figure, value)``).

    ``goal_met_NAME`` gives the verdict on figure ``NAME`` against ``goal_NAME``; a ``goal_NAME``
    without a verdict shows "not judged", and any other boolean key naming a goal (an older
    benchmark's ``..._goal_met``) shows as a verdict without a figure."""
    flat = flatten(res)
    goals, used = [], set()
    for key, met in flat.items():
        pre, last = _split(key)
        if last.startswith("goal_met_"):
            fig, goal = pre + last[len("goal_met_"):], pre + "goal_" + last[len("goal_met_"):]
            goals.append((name, fig, fmt(flat.get(fig)), fmt(flat.get(goal)), fmt(bool(met))))
            used |= {key, fig, goal}
    for key, v in flat.items():
        pre, last = _split(key)
        if key in used or "goal" not in last:
            continue
        if last.startswith("goal_") and not isinstance(v, bool):
            fig = pre + last[len("goal_"):]
            goals.append((name, fig, fmt(flat.get(fig)), fmt(v), "not judged"))
            used |= {key, fig}
        elif isinstance(v, bool):
            goals.append((name, key, "", "", fmt(v)))
            used.add(key)
    others = [(name, k, fmt(v)) for k, v in flat.items() if k not in used]
    return goals, others


def markdown(results: dict, meta: dict) -> str:
    """The report: a count of goals met, each miss named, the goal table, then every other figure."""
    goal_lines, other_lines, missed = [], [], []
    for name, r in results.items():
        if r["result"] is None:
            goal_lines.append(f"| {name} | (crashed, exit {r['exit_status']}) | | | **no** |")
            missed.append(f"{name}: crashed (exit {r['exit_status']})")
            continue
        goals, others = goal_rows(name, r["result"])
        for row in goals:
            goal_lines.append("| " + " | ".join(row) + " |")
            if row[-1] != "yes":
                missed.append(f"{row[0]}: {row[1]} = {row[2] or 'n/a'} (goal {row[3] or '?'}): {row[4]}")
        other_lines += ["| " + " | ".join(row) + " |" for row in others]
    n = len(goal_lines)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta["when_unix_s"]))
    lines = ["# Benchmark results", "", f"{when}, {meta['cpus']} CPUs. Goals are reported, not asserted.", "",
             f"## Goals: {n - len(missed)} of {n} met", ""]
    lines += [f"- not met: {m}" for m in missed] + ([""] if missed else [])
    lines += ["| benchmark | figure | value | goal | met |", "|---|---|---|---|---|", *goal_lines, "",
              "## Other figures", "", "| benchmark | figure | value |", "|---|---|---|", *other_lines]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--timeout-s", type=float, default=900)
    a = ap.parse_args()
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP and not p.name.startswith("_"))
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
    (out_dir / "latest.md").write_text(markdown(results, meta))
    print(f"wrote {out_dir / 'latest.json'} and {out_dir / 'latest.md'}")
    print(json.dumps({"benchmarks": len(results), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
