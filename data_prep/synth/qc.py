"""Quality control for synthetic dialogues.

Always: duration, clipping, silence ratio (timeline with nobody speaking), per-turn presence of
speech and speech loudness. Optionally: ASR word error rate per turn against ``spoken_text``
(ShareChatX keeps WER <= 5%; the threshold is ``synth.qc_max_wer``) with a pluggable
``asr(wave16k) -> str`` -- any :class:`omni.asr.ASR` (e.g. :func:`whisper_asr`: Whisper base,
``synth.qc_asr_path: pretrained:whisper-base``; or ``omni.asr.AlignedASR(export_dir)``).
:func:`pass_table` summarises the pass fraction per voice and per emotion style.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

SR = 16000
ASR = Callable[[np.ndarray], str]



def normalize_text(text: str) -> str:
    """Lower case, no punctuation or apostrophes, hyphens split, numbers spelled out, collapsed
    spaces: :func:`omni.asr.normalize_for_wer` (shared with evaluation and benchmarks)."""
    from omni.asr import normalize_for_wer
    return normalize_for_wer(text)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after :func:`normalize_text` (Levenshtein over words): :func:`omni.asr.wer`."""
    from omni.asr import wer as _wer
    return _wer(reference, hypothesis)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12)) if len(x) else -120.0


def basic_checks(record: dict, *, min_duration_s: float = 0.5, max_duration_s: float = 120.0,
                 max_clip_fraction: float = 0.001, max_silence_ratio: float = 0.6,
                 loudness_dbfs: tuple[float, float] = (-45.0, -3.0)) -> tuple[list[str], dict]:
    """(reasons, metrics) for one record; an empty ``reasons`` list means it passed."""
    meta, reasons, m = record["meta"], [], {}
    sr = meta.get("sample_rate_hz", SR)
    user, asst = record["user"], record["assistant"]
    if len(user) != len(asst):
        reasons.append(f"channel lengths differ ({len(user)} vs {len(asst)} samples)")
    dur = len(user) / sr
    m["duration_s"] = round(dur, 3)
    if not min_duration_s <= dur <= max_duration_s:
        reasons.append(f"duration {dur:.2f} s outside [{min_duration_s}, {max_duration_s}]")
    for name, x in (("user", user), ("assistant", asst)):
        if not np.all(np.isfinite(x)):
            reasons.append(f"{name} channel has NaN/inf samples")
            continue
        clip = float(np.mean(np.abs(x) >= 0.999)) if len(x) else 0.0
        m[f"{name}_clip_fraction"] = round(clip, 6)
        if clip > max_clip_fraction:
            reasons.append(f"{name} channel clipped: {clip:.4f} of samples at full scale (max {max_clip_fraction})")
    covered = np.zeros(int(np.ceil(dur * 100)) + 1, bool)  # 10 ms grid
    for k, t in enumerate(meta["turns"]):
        covered[int(t["start_s"] * 100):int(np.ceil(t["end_s"] * 100))] = True
        x = record[t["speaker"]][int(t["start_s"] * sr):int(t["end_s"] * sr)]
        level = _db(x)
        if level < loudness_dbfs[0] or level > loudness_dbfs[1]:
            reasons.append(f"turn {k} ({t['speaker']}) speech level {level:.1f} dBFS outside {list(loudness_dbfs)}")
    silence = 1.0 - float(covered.mean()) if len(covered) else 1.0
    m["silence_ratio"] = round(silence, 3)
    if silence > max_silence_ratio:
        reasons.append(f"silence ratio {silence:.2f} > {max_silence_ratio} (nobody speaks most of the time)")
    for name in ("user", "assistant"):
        spans = [t for t in meta["turns"] if t["speaker"] == name]
        if spans:
            m[f"{name}_speech_dbfs"] = round(float(np.mean(
                [_db(record[name][int(t["start_s"] * sr):int(t["end_s"] * sr)]) for t in spans])), 2)
    return reasons, m


def asr_checks(record: dict, asr: ASR, max_wer: float, clean: list[np.ndarray] | None = None) -> tuple[list[str], dict]:
    """Transcribe every ``kind == "turn"`` turn (``clean[k]`` when given, else the channel slice)
    and reject when any WER against ``spoken_text`` exceeds ``max_wer``."""
    reasons, wers = [], []
    sr = record["meta"].get("sample_rate_hz", SR)
    for k, t in enumerate(record["meta"]["turns"]):
        if t.get("kind", "turn") != "turn":
            continue
        audio = clean[k] if clean is not None and clean[k] is not None else \
            record[t["speaker"]][max(0, int((t["start_s"] - 0.05) * sr)):int((t["end_s"] + 0.05) * sr)]
        hyp = asr(np.asarray(audio, np.float32))
        w = wer(t["spoken_text"], hyp)
        wers.append(w)
        if w > max_wer:
            reasons.append(f"turn {k} WER {w:.2f} > {max_wer}: heard {hyp!r} for {t['spoken_text']!r}")
    return reasons, {"max_wer": round(max(wers), 4) if wers else 0.0,
                     "mean_wer": round(float(np.mean(wers)), 4) if wers else 0.0,
                     "turn_wers": [round(w, 4) for w in wers]}


def pass_table(records_meta: list[dict], max_wer: float) -> dict:
    """Fraction of ASR-checked turns with WER <= ``max_wer``, per voice and per emotion style.

    ``records_meta``: dialogue ``meta`` dicts whose ``qc`` holds ``turn_wers`` (QC run with an ASR).
    Returns ``{"voice": {name: {"turns", "pass_fraction", "mean_wer"}}, "emotion": {...}, "all": {...}}``."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for meta in records_meta:
        wers = meta.get("qc", {}).get("turn_wers")
        if wers is None:
            raise ValueError(f"record {meta.get('id')!r} has no qc.turn_wers: run QC with an ASR (synth.qc_max_wer)")
        turns = [t for t in meta["turns"] if t.get("kind", "turn") == "turn"]
        for t, w in zip(turns, wers):
            for key in (("voice", meta["voices"][t["speaker"]]), ("emotion", t.get("emotion", "neutral")), ("all", "all")):
                groups[key].append(w)
    out: dict = {"voice": {}, "emotion": {}, "all": {}}
    for (kind, name), ws in sorted(groups.items()):
        out[kind][name] = {"turns": len(ws), "pass_fraction": round(float(np.mean(np.array(ws) <= max_wer)), 4),
                           "mean_wer": round(float(np.mean(ws)), 4)}
    return out


_ASR_CACHE: dict[tuple, ASR] = {}


def whisper_asr(model_path: str | None = "pretrained:whisper-base", cpu_threads: int | None = None) -> ASR:
    """``asr(wave16k) -> text``: :class:`omni.asr.WhisperASR` (faster-whisper, int8) from a local
    CTranslate2 folder or ``pretrained:whisper-base`` (assembled by ``make models``); one model
    per process and folder. ``cpu_threads`` default: ``$OMNI_ASR_THREADS`` or 2. Nothing is downloaded."""
    import os

    from omni.pretrained import resolve_path
    path = resolve_path(model_path or "pretrained:whisper-base")
    key = (path, cpu_threads)
    if key not in _ASR_CACHE:
        if not os.path.isfile(os.path.join(path, "model.bin")):
            raise FileNotFoundError(f"synth.qc_asr_path={model_path!r} is not a faster-whisper model folder "
                                    "(needs model.bin + config.json; or use pretrained:whisper-base after `make models`)")
        from omni.asr import WhisperASR
        _ASR_CACHE[key] = WhisperASR(path, cpu_threads=cpu_threads)
    return _ASR_CACHE[key]


def run_qc(record: dict, *, asr: ASR | None = None, max_wer: float | None = None,
           clean: list[np.ndarray] | None = None, **basic) -> dict:
    """``{"passed": bool, "reasons": [...], **metrics}``; ASR runs only when the basic checks pass."""
    reasons, metrics = basic_checks(record, **basic)
    if asr is not None and max_wer is not None and not reasons:
        r, m = asr_checks(record, asr, max_wer, clean)
        reasons += r
        metrics.update(m)
    return {"passed": not reasons, "reasons": reasons, **metrics}
