"""Turn-taking from timelines: when does the assistant start speaking after the user stops?"""
from __future__ import annotations

import numpy as np


def voiced_segments(units: np.ndarray, silence_unit: int, frame_rate_hz: float,
                    min_gap_s: float = 0.2) -> list[tuple[float, float]]:
    """(start_s, end_s) runs of non-silence units, merging gaps shorter than ``min_gap_s``."""
    voiced = np.asarray(units) != silence_unit
    segs: list[list[float]] = []
    i, n = 0, len(voiced)
    while i < n:
        if voiced[i]:
            j = i
            while j < n and voiced[j]:
                j += 1
            s, e = i / frame_rate_hz, j / frame_rate_hz
            if segs and s - segs[-1][1] < min_gap_s:
                segs[-1][1] = e
            else:
                segs.append([s, e])
            i = j
        else:
            i += 1
    return [(a, b) for a, b in segs]


def response_latencies(user_turn_ends_s: list[float], assistant_segments: list[tuple[float, float]],
                       horizon_s: float = 5.0) -> dict:
    """For each end of a user turn, the delay until the assistant next starts speaking
    (within ``horizon_s``; otherwise counted as a missed turn). Assistant speech already running
    at the user's end of turn counts as latency 0 only if it started after the user began."""
    lat, missed = [], 0
    for end in user_turn_ends_s:
        nxt = [s for s, _ in assistant_segments if end - 1e-9 <= s <= end + horizon_s]
        if nxt:
            lat.append(min(nxt) - end)
        else:
            missed += 1
    out = {"turns": len(user_turn_ends_s), "responded": len(lat), "missed": missed,
           "response_rate": len(lat) / max(1, len(user_turn_ends_s))}
    if lat:
        out.update({"latency_p50_s": float(np.percentile(lat, 50)), "latency_p90_s": float(np.percentile(lat, 90)),
                    "latency_mean_s": float(np.mean(lat))})
    return out
