"""Validation: every failure is a :class:`Reject` with a stable code and a readable detail.

A reason string is ``"<code>: <detail>"``; ``rejects.jsonl`` stores it with the row's input.
Codes (stable, tests and dashboards match on them):

=====================  =====================================================================
``unreadable``         file missing, not a regular file (FIFO, device, folder), unreadable, or
                       the decoder failed (corrupt header, unsupported encoding)
``truncated``          the header promises more audio than the file holds (incl. WAV sizes
                       that lie, e.g. ``0xFFFFFFFF``)
``empty_file``         a 0-byte file
``too_large``          a file over ``data.max_file_mb`` (checked from its size, before reading)
``not_audio``          the file is not in any audio format libsndfile knows
``bad_format``         sample rate outside [MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ] or more
                       than MAX_CHANNELS channels (checked from the header, before decoding)
``zero_length``        a valid audio file with no samples
``nan_inf``            NaN or infinite samples
``clipping``           more than ``data.max_clip_fraction`` of samples at full scale
``duration``           outside ``[data.min_duration_s, data.max_duration_s]``; a header that
                       declares more than the maximum (a FLAC "zip bomb") is refused undecoded
``missing_transcript`` no transcript for an utterance (no text key / no .txt / no line)
``empty_transcript``   transcript present but blank
``bad_encoding``       a transcript, manifest line or timings file that is not UTF-8
``unknown_emotion``    an emotion (or pitch/speed) label outside ``omni.config.EMOTIONS``
``path_outside_root``  a path escaping the source's folder (``..``, absolute, or a symlink
                       whose target lies outside); the target is never opened
``bad_row``            a manifest line that is not a JSON object with an ``audio`` path
                       (incl. nesting too deep to parse, a NUL byte in the path)
``qc``                 the synthetic generator's own QC failed
``bad_record``         structural problems (no turns, channel lengths, timings)
=====================  =====================================================================

``docs/reliability.md`` lists, for each kind of hostile input, the code it gets.
"""
from __future__ import annotations

import numpy as np

from omni.config import EMOTIONS, PITCHES, SPEEDS, DataConfig

SAMPLE_RATE_HZ = 16000
FULL_SCALE = 0.999
MIN_SAMPLE_RATE_HZ = 8000          # input audio (resampled to 16 kHz); outside: bad_format
MAX_SAMPLE_RATE_HZ = 192000
MAX_CHANNELS = 8                   # more channels than this: bad_format (a mic array is not a dialogue)
MAX_TEXT_BYTES = 16 * 2 ** 20      # transcripts, timings, metadata files: larger is too_large


class Reject(Exception):
    """A row that must go to ``rejects.jsonl``; ``str(e)`` is the reason ``"code: detail"``."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def check_wave(wave: np.ndarray, cfg: DataConfig, what: str = "audio") -> None:
    """Sample-level checks on decoded audio (any rate, any channels), before resampling."""
    if wave.size == 0:
        raise Reject("zero_length", f"{what} has no samples")
    if not np.all(np.isfinite(wave)):
        bad = int(np.sum(~np.isfinite(wave)))
        raise Reject("nan_inf", f"{what} has {bad} NaN/inf samples")
    clip = float(np.mean(np.abs(wave) >= FULL_SCALE))
    if clip > cfg.max_clip_fraction:
        raise Reject("clipping", f"{what}: {clip:.3f} of samples at full scale (> data.max_clip_fraction="
                                 f"{cfg.max_clip_fraction})")


def check_duration(duration_s: float, cfg: DataConfig, what: str = "audio") -> None:
    if not cfg.min_duration_s <= duration_s <= cfg.max_duration_s:
        raise Reject("duration", f"{what} lasts {duration_s:.2f}s, outside [{cfg.min_duration_s}, "
                                 f"{cfg.max_duration_s}] s (data.min_duration_s / data.max_duration_s)")


def check_text(text, what: str = "transcript", required: bool = True) -> str:
    if text is None:
        if required:
            raise Reject("missing_transcript", f"no {what}")
        return ""
    if not isinstance(text, str):
        raise Reject("missing_transcript", f"{what} is {type(text).__name__}, expected a string")
    if required and not text.strip():
        raise Reject("empty_transcript", f"{what} is blank")
    return text.strip()


def check_label(field: str, value, allowed: tuple[str, ...], where: str = "") -> None:
    if value not in allowed:
        code = "unknown_emotion" if field == "emotion" else f"unknown_{field}"
        raise Reject(code, f"{where}{field} label {value!r} not in ({', '.join(allowed)})")


def validate_record(rec: dict, cfg: DataConfig) -> str | None:
    """Whole-record checks on a 16 kHz dialogue record; returns the reason or None (accepted)."""
    try:
        _validate(rec, cfg)
    except Reject as e:
        return str(e)
    return None


def _validate(rec: dict, cfg: DataConfig) -> None:
    meta = rec.get("meta") or {}
    turns = meta.get("turns") or []
    qc = meta.get("qc")
    if isinstance(qc, dict) and qc.get("passed") is False:
        raise Reject("qc", "; ".join(map(str, qc.get("reasons") or ["failed"])))
    if not turns:
        raise Reject("bad_record", "no turns")
    user, asst = rec.get("user"), rec.get("assistant")
    if user is None or asst is None:
        raise Reject("bad_record", "missing audio channel")
    if len(user) != len(asst):
        raise Reject("bad_record", f"channel lengths differ ({len(user)} vs {len(asst)} samples)")
    if len(user) == 0:
        raise Reject("zero_length", "record has no samples")
    for name, ch in (("user", user), ("assistant", asst)):
        check_wave(np.asarray(ch), cfg, f"{name} channel")
    dur = len(user) / SAMPLE_RATE_HZ
    check_duration(dur, cfg, "record")
    transcribed = meta.get("transcribed", True)
    if not any(t.get("speaker") == "assistant" for t in turns):
        raise Reject("bad_record", "no assistant turn")
    for i, t in enumerate(turns):
        if t.get("speaker") not in ("user", "assistant"):
            raise Reject("bad_record", f"turn {i}: unknown speaker {t.get('speaker')!r}")
        check_text(t.get("spoken_text", t.get("text")), f"turn {i} transcript", required=transcribed)
        for field, allowed, default in (("emotion", EMOTIONS, "neutral"), ("pitch", PITCHES, "normal"),
                                        ("speed", SPEEDS, "normal")):
            check_label(field, t.get(field, default), allowed, f"turn {i}: ")
        s, e = t.get("start_s"), t.get("end_s")
        if s is None or e is None or not 0 <= s < e <= dur + 1e-3:
            raise Reject("bad_record", f"turn {i}: timing [{s}, {e}] outside the {dur:.2f}s recording")
