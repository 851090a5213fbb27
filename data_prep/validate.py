"""Row validation: one function, one reason string per failure (None = accepted)."""
from __future__ import annotations

import numpy as np

from omni.config import EMOTIONS, PITCHES, SPEEDS, DataConfig

SAMPLE_RATE_HZ = 16000


def validate_record(rec: dict, cfg: DataConfig) -> str | None:
    meta = rec.get("meta") or {}
    turns = meta.get("turns") or []
    qc = meta.get("qc")
    if isinstance(qc, dict) and qc.get("passed") is False:
        return "qc: " + "; ".join(map(str, qc.get("reasons") or ["failed"]))
    if not turns:
        return "no turns"
    user, asst = rec.get("user"), rec.get("assistant")
    if user is None or asst is None:
        return "missing audio channel"
    if len(user) != len(asst):
        return f"channel lengths differ ({len(user)} vs {len(asst)} samples)"
    if len(user) == 0:
        return "zero-length audio"
    for name, ch in (("user", user), ("assistant", asst)):
        if not np.all(np.isfinite(ch)):
            return f"{name} channel has NaN/inf samples"
        clip = float(np.mean(np.abs(ch) >= 0.999))
        if clip > cfg.max_clip_fraction:
            return f"{name} channel clipped: {clip:.3f} of samples at full scale (> {cfg.max_clip_fraction})"
    dur = len(user) / SAMPLE_RATE_HZ
    if not cfg.min_duration_s <= dur <= cfg.max_duration_s:
        return f"duration {dur:.2f}s outside [{cfg.min_duration_s}, {cfg.max_duration_s}] s"
    if not any(t.get("speaker") == "assistant" for t in turns):
        return "no assistant turn"
    for i, t in enumerate(turns):
        if t.get("speaker") not in ("user", "assistant"):
            return f"turn {i}: unknown speaker {t.get('speaker')!r}"
        if not str(t.get("spoken_text", t.get("text", ""))).strip():
            return f"turn {i}: empty transcript"
        for field, allowed in (("emotion", EMOTIONS), ("pitch", PITCHES), ("speed", SPEEDS)):
            v = t.get(field, allowed[0] if field == "emotion" else "normal")
            if v not in allowed:
                return f"turn {i}: unknown {field} label {v!r} (allowed: {', '.join(allowed)})"
        s, e = t.get("start_s"), t.get("end_s")
        if s is None or e is None or not 0 <= s < e <= dur + 1e-3:
            return f"turn {i}: timing [{s}, {e}] outside the {dur:.2f}s recording"
    return None
