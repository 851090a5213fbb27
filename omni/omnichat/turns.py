"""Where a user turn lies in a dialogue record: the (user, assistant) rounds and the samples of a turn.

The one definition of a turn's cut, shared by :mod:`omni.omnichat.data` (training examples) and
:mod:`omni.omnichat.precompute` (features stored at data prep must cover exactly the samples
training reads). A leaf module: it imports nothing from the rest of ``omni.omnichat``.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 16000
MARGIN_S = 0.05
"""Samples kept before and after a turn's word timings."""


def turn_wave(channel: np.ndarray, start_s: float, end_s: float, max_turn_s: float) -> np.ndarray:
    """The turn's samples (with a 50 ms margin); over-long turns keep their last ``max_turn_s``."""
    a = max(0, int((start_s - MARGIN_S) * SAMPLE_RATE_HZ))
    b = min(len(channel), int((end_s + MARGIN_S) * SAMPLE_RATE_HZ))
    a = max(a, b - int(max_turn_s * SAMPLE_RATE_HZ))
    return np.asarray(channel[a:b], dtype=np.float32)


def rounds_of(meta: dict) -> list[tuple[dict, dict]]:
    """(user turn, assistant turn) pairs in time order (backchannels and unpaired turns skipped)."""
    turns = sorted((t for t in meta.get("turns", []) if t.get("kind", "turn") == "turn"),
                   key=lambda t: float(t["start_s"]))
    out = []
    for a, b in zip(turns, turns[1:]):
        if a.get("speaker") == "user" and b.get("speaker") == "assistant" and b.get("text_ids"):
            out.append((a, b))
    return out
