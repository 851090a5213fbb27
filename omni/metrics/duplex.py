"""Full-duplex turn-taking metrics from two-channel timelines (plain Python, times in seconds).

Inputs: the *reference* user turns (``{"start_s", "end_s", "kind", "expects_response"}``, from
the data: the user channel is what the model hears) and the assistant's *predicted* speech
segments ``[(start_s, end_s), ...]`` (from running the streaming engine), plus the
conversation length. Definitions (ours; OmniFlatten reports the first two):

* **response latency**: for each user turn that expects a response (the next reference turn is
  the assistant's; backchannels never do), the delay from the user's end of turn to the first
  predicted assistant start in ``[end - early_tolerance_s, min(end + horizon_s, next user
  start))``. Such a start is a *successful turn take*; none is a *missed* turn. Signed: a start
  inside the early tolerance gives a small negative latency.
* **user turn-taking (stop) latency**: for each user turn (not a backchannel) that starts while
  the assistant is speaking (an *interruption*), the time from the user's start to the end of
  that assistant segment. Stopping within ``max_stop_s`` is a *successful yield*.
* **turn-taking success rate** = (successful turn takes + successful yields) / (response
  opportunities + interruptions).
* **false barge-in**: an assistant start strictly inside a user turn (after its start, before
  ``end - early_tolerance_s``); rate = false barge-ins / user turns (backchannels excluded).
* **overlap ratio** = |user ∩ assistant| / duration; **silence ratio** = (duration - |user ∪
  assistant|) / duration. Backchannels count as user speech here.

A figure with no event to measure (no interruption, say) is absent from the result, never 0.
"""
from __future__ import annotations

import numpy as np

from omni import vad

Segment = tuple[float, float]


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


def energy_segments(wave: np.ndarray, sample_rate_hz: int = 16000, frame_ms: float = 40.0,
                    threshold_dbfs: float = -45.0, min_gap_s: float = 0.2, offset_s: float = 0.0) -> list[Segment]:
    """Voiced segments of the engine's output channel, by :func:`omni.vad.energy_segments` (the
    project's one VAD module) with evaluation's settings: ``frame_ms`` frames above
    ``threshold_dbfs`` RMS, gaps of at most ``min_gap_s`` merged. An energy rule on purpose: it
    times the decoded units exactly, also for an untrained model whose output is not speech-like;
    the Full-Duplex-Bench figures (:mod:`omni.metrics.fdb`) score with Silero, as the benchmark."""
    segs = vad.energy_segments(wave, sample_rate_hz, frame_ms=frame_ms, threshold_dbfs=threshold_dbfs,
                               min_speech_s=0.0, merge_gap_s=min_gap_s)
    return [(a + offset_s, b + offset_s) for a, b in segs]


def user_turns_from_meta(meta: dict) -> list[dict]:
    """Reference user turns of a record's ``meta`` with ``expects_response`` filled in: a user turn
    expects a response when the next turn (backchannels aside) to start after it is the assistant's."""
    turns = sorted(meta.get("turns", []), key=lambda t: (t["start_s"], t["end_s"]))
    out = []
    for i, t in enumerate(turns):
        if t["speaker"] != "user":
            continue
        later = [u for u in turns[i + 1:] if u["start_s"] >= t["start_s"] and u.get("kind") != "backchannel"]
        nxt = later[0]["speaker"] if later else None
        kind = t.get("kind", "turn")
        out.append({"start_s": float(t["start_s"]), "end_s": float(t["end_s"]), "kind": kind,
                    "expects_response": nxt == "assistant" and kind != "backchannel"})
    return out


def assistant_segments_from_meta(meta: dict) -> list[Segment]:
    return [(float(t["start_s"]), float(t["end_s"])) for t in meta.get("turns", []) if t["speaker"] == "assistant"]


def _union(segs) -> list[Segment]:
    out: list[list[float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in segs if b > a):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]


def _length(segs) -> float:
    return float(sum(e - s for s, e in _union(segs)))


def _intersection(a, b) -> float:
    total = 0.0
    for s1, e1 in _union(a):
        for s2, e2 in _union(b):
            total += max(0.0, min(e1, e2) - max(s1, s2))
    return total


def _check(user_turns, assistant, duration_s) -> None:
    if duration_s is None or duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    for t in user_turns:
        if not (0 <= t["start_s"] <= t["end_s"]):
            raise ValueError(f"user turn {t} has start_s > end_s or a negative time")
    for s, e in assistant:
        if e < s or s < 0:
            raise ValueError(f"assistant segment ({s}, {e}) ends before it starts or is negative")


def turn_taking_events(user_turns: list[dict], assistant: list[Segment], *, horizon_s: float = 3.0,
                       early_tolerance_s: float = 0.2, max_stop_s: float = 2.0) -> dict:
    """Per-event lists for one conversation (see the module docstring): ``response_latencies_s``,
    ``missed``, ``stop_latencies_s``, ``stopped``, ``interruptions``, ``false_barge_ins``, counts."""
    segs = _union(assistant)
    starts = [s for s, _ in segs]
    main = sorted((t for t in user_turns if t.get("kind", "turn") != "backchannel"), key=lambda t: t["start_s"])
    resp, missed, stops, stopped, interrupts, barge = [], 0, [], 0, 0, 0
    for k, t in enumerate(main):
        if t.get("expects_response", True):
            nxt = main[k + 1]["start_s"] if k + 1 < len(main) else float("inf")
            lo, hi = t["end_s"] - early_tolerance_s, min(t["end_s"] + horizon_s, nxt)
            cand = [s for s in starts if lo <= s < hi]
            if cand:
                resp.append(min(cand) - t["end_s"])
            else:
                missed += 1
        covering = [(s, e) for s, e in segs if s < t["start_s"] < e]
        if covering:
            interrupts += 1
            stop = covering[0][1] - t["start_s"]
            stops.append(stop)
            stopped += stop <= max_stop_s
        barge += sum(1 for s in starts if t["start_s"] < s < t["end_s"] - early_tolerance_s)
    return {"response_latencies_s": resp, "missed": missed, "opportunities": len(resp) + missed,
            "stop_latencies_s": stops, "stopped": int(stopped), "interruptions": interrupts,
            "false_barge_ins": barge, "user_turns": len(main)}


def duplex_metrics(conversations: list[dict], **kw) -> dict:
    """Pool conversations (each ``{"user_turns", "assistant", "duration_s"}``) into one summary.

    Keys (absent when nothing was measured): ``response_latency_p50_s``/``_p90_s``/``_mean_s``,
    ``stop_latency_p50_s``/``_p90_s``, ``turn_taking_success_rate``, ``response_rate``,
    ``yield_rate``, ``false_barge_in_rate`` (per user turn), ``false_barge_ins_per_min``,
    ``overlap_ratio``, ``silence_ratio``; plus the raw lists and counts."""
    if not conversations:
        raise ValueError("no conversations to score")
    resp, stops = [], []
    c = {"missed": 0, "opportunities": 0, "stopped": 0, "interruptions": 0, "false_barge_ins": 0, "user_turns": 0}
    dur = overlap = speech = 0.0
    for conv in conversations:
        _check(conv["user_turns"], conv["assistant"], conv["duration_s"])
        ev = turn_taking_events(conv["user_turns"], conv["assistant"], **kw)
        resp += ev["response_latencies_s"]
        stops += ev["stop_latencies_s"]
        for k in c:
            c[k] += ev[k]
        user = [(t["start_s"], t["end_s"]) for t in conv["user_turns"]]
        clip = [(max(0.0, s), min(conv["duration_s"], e)) for s, e in conv["assistant"]]
        dur += conv["duration_s"]
        overlap += _intersection(user, clip)
        speech += _length(user + clip)
    out: dict = {"conversations": len(conversations), "duration_s": dur, **c,
                 "response_latencies_s": resp, "stop_latencies_s": stops,
                 "overlap_ratio": overlap / dur, "silence_ratio": max(0.0, dur - speech) / dur}
    if resp:
        out.update(response_latency_p50_s=float(np.percentile(resp, 50)),
                   response_latency_p90_s=float(np.percentile(resp, 90)), response_latency_mean_s=float(np.mean(resp)))
    if stops:
        out.update(stop_latency_p50_s=float(np.percentile(stops, 50)), stop_latency_p90_s=float(np.percentile(stops, 90)))
    if c["opportunities"]:
        out["response_rate"] = len(resp) / c["opportunities"]
    if c["interruptions"]:
        out["yield_rate"] = c["stopped"] / c["interruptions"]
    if c["opportunities"] + c["interruptions"]:
        out["turn_taking_success_rate"] = (len(resp) + c["stopped"]) / (c["opportunities"] + c["interruptions"])
    if c["user_turns"]:
        out["false_barge_in_rate"] = c["false_barge_ins"] / c["user_turns"]
    out["false_barge_ins_per_min"] = c["false_barge_ins"] / (dur / 60.0)
    return out


def response_latencies(user_turn_ends_s: list[float], assistant_segments: list[tuple[float, float]],
                       horizon_s: float = 5.0) -> dict:
    """Simple form kept for callers of the first version: for each user end of turn, the delay
    until the assistant next starts (within ``horizon_s``; else a missed turn)."""
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


def talk_back(reply_wave, sample_rate_hz: int, user_end_s: float, *, within_s: float = 1.5,
              min_voiced_s: float = 1.5) -> dict:
    """Did the assistant answer one user turn? Scored on the reply audio alone, by Silero VAD
    (:data:`omni.vad.FDB_SILERO`), on the stream's timeline (the reply's sample 0 = the user
    audio's sample 0).

    ``voiced_during_user_s``: voiced reply audio before ``user_end_s`` (talking over the user);
    ``turn_start_after_end_s``: start of the first voiced segment at or after ``user_end_s``,
    minus ``user_end_s`` (``None`` if it never speaks); ``voiced_reply_s``: voiced seconds after
    ``user_end_s``. ``answered`` = it starts within ``within_s``, does not speak during the user's
    turn, and says at least ``min_voiced_s`` - so a silent model, one that speaks throughout, and
    one that says a blip all fail."""
    segs = vad.silero_segments(reply_wave, sample_rate_hz, **vad.FDB_SILERO)
    during = sum(max(0.0, min(b, user_end_s) - a) for a, b in segs if a < user_end_s)
    after = [(max(a, user_end_s), b) for a, b in segs if b > user_end_s]
    start = round(after[0][0] - user_end_s, 3) if after else None
    voiced = round(sum(b - a for a, b in after), 3)
    return {"user_end_s": round(user_end_s, 3), "turn_start_after_end_s": start,
            "voiced_during_user_s": round(during, 3), "voiced_reply_s": voiced,
            "answered": bool(start is not None and start <= within_s and during <= 0.1 and voiced >= min_voiced_s),
            "goal_within_s": within_s, "goal_min_voiced_s": min_voiced_s}
