"""`make bench`'s report (benchmarks/run_all.py) on constructed benchmark outputs: every goal shows
with its figure and verdict, a missed one as **no**, and no figure (nested, list) is dropped."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))            # as when the scripts run: helpers import by bare name
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


run_all = _load("run_all")
goals = _load("_goals")


def _report(results: dict) -> str:
    wrapped = {k: {"exit_status": 0 if v is not None else 1, "wall_s": 1.0, "result": v} for k, v in results.items()}
    return run_all.markdown(wrapped, {"when_unix_s": 0, "cpus": 2})


def test_judge_states_goal_and_verdict():
    r = {"rtf": 0.12}
    assert goals.judge(r, "rtf", "<=", 0.1) is False
    assert r == {"rtf": 0.12, "goal_rtf": "<= 0.1", "goal_met_rtf": False}
    assert goals.judge(r, "speedup", ">=", 1.7, figure=1.9) and r["goal_met_speedup"] is True
    assert goals.judge(r, "p50_ms", "<=", 40, figure=None) is False           # not measured: not met
    with pytest.raises(ValueError, match="goal operator '~'"):
        goals.judge(r, "x", "~", 1)


def test_missed_goal_shows_no_beside_its_figure_and_goal():
    engine = {"rtf_per_session": 0.2, "latency_ratio_late_vs_early": 1.1, "threads": 1}
    goals.judge(engine, "rtf_per_session", "<=", goals.ENGINE_RTF_GOAL)
    goals.judge(engine, "latency_ratio_late_vs_early", "<=", 1.5)
    md = _report({"duplex_engine": engine})
    assert "| duplex_engine | rtf_per_session | 0.2 | <= 0.1 | **no** |" in md
    assert "| duplex_engine | latency_ratio_late_vs_early | 1.1 | <= 1.5 | yes |" in md
    assert "## Goals: 1 of 2 met" in md
    assert "- not met: duplex_engine: rtf_per_session = 0.2 (goal <= 0.1): **no**" in md
    assert "| duplex_engine | threads | 1 |" in md                            # other figures stay


def test_nested_list_and_unjudged_results_are_not_dropped():
    res = {"rows": [{"sessions": 1, "p50_ms": 12.5}, {"sessions": 8, "p50_ms": 48.0}],
           "bare_windows": [900, 950, 1000], "stages": {"align": {"ratio": 0.5, "goal_met_ratio": True,
                                                                   "goal_ratio": "<= 0.7"}},
           "goal_cpu_minutes": 20, "cpu_minutes": 25.0, "fusion_goal_met": False}
    md = _report({"bench": res, "broken": None})
    for row in ("| bench | rows.0.p50_ms | 12.5 |", "| bench | rows.1.sessions | 8 |",
                "| bench | bare_windows | [900,950,1000] |",
                "| bench | stages.align.ratio | 0.5 | <= 0.7 | yes |",
                "| bench | cpu_minutes | 25 | 20 | not judged |",          # a goal without a verdict is shown
                "| bench | fusion_goal_met |  |  | **no** |",              # an older verdict key still shows
                "| broken | (crashed, exit 1) | | | **no** |"):
        assert row in md, row
    assert "## Goals: 1 of 4 met" in md
