"""How a benchmark states a goal, so that ``run_all.py`` can show it with its figure and verdict.

Every goal is three keys in the benchmark's own JSON: the figure ``NAME``, the goal ``goal_NAME``
(a string such as ``"<= 0.1"``) and the verdict ``goal_met_NAME`` (a bool). :func:`judge` writes
the last two (and the figure, when given). A figure that was not measured (None) does not meet
its goal.
"""
from __future__ import annotations

import operator

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}

ENGINE_RTF_GOAL = 0.1
"""The streaming duplex engine's real-time target on one core (wall or compute seconds per audio
second): judged by duplex_engine.py and, for the engine inside evaluation, by evaluate.py."""


def judge(result: dict, name: str, op: str, threshold, figure=None) -> bool:
    """Record goal ``NAME op threshold`` and its verdict in ``result``; returns the verdict."""
    if op not in OPS:
        raise ValueError(f"goal operator {op!r}: use one of {', '.join(OPS)}")
    if figure is not None:
        result[name] = figure
    value = result.get(name)
    met = value is not None and bool(OPS[op](value, threshold))
    result[f"goal_{name}"] = f"{op} {threshold}"
    result[f"goal_met_{name}"] = met
    return met
