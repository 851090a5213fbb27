"""Quality control for synthetic dialogues.

Always: duration, clipping, silence ratio (timeline with nobody speaking), per-turn presence of
speech and speech loudness. Optionally: ASR word error rate per turn against ``spoken_text``
(ShareChatX keeps WER <= 5%) with a pluggable ``asr(wave16k) -> str`` -- e.g.
:func:`whisper_asr` (faster-whisper, imported lazily, model from a local folder) or the
project's own aligned checkpoint wrapped in a function.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

SR = 16000
ASR = Callable[[np.ndarray], str]

_NUMS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
         "8": "eight", "9": "nine", "10": "ten"}


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, hyphens split, small digits spelled out, collapsed spaces."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(_NUMS.get(w, w) for w in text.replace("'", "").split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after :func:`normalize_text` (Levenshtein over words)."""
    ref, hyp = normalize_text(reference).split(), normalize_text(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[len(hyp)] / len(ref))


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
                     "mean_wer": round(float(np.mean(wers)), 4) if wers else 0.0}


_ASR_CACHE: dict[str, ASR] = {}


def whisper_asr(model_path: str, cpu_threads: int = 1) -> ASR:
    """``asr(wave16k) -> text`` from a local faster-whisper (CTranslate2) model folder.

    faster-whisper is optional: install it with ``pip install faster-whisper``. Nothing is
    downloaded: ``model_path`` must be a folder holding ``model.bin`` and ``config.json``."""
    if model_path in _ASR_CACHE:
        return _ASR_CACHE[model_path]
    import os
    if not os.path.isfile(os.path.join(model_path, "model.bin")):
        raise FileNotFoundError(f"synth.qc_asr_path={model_path!r} is not a faster-whisper model folder "
                                "(needs model.bin + config.json; nothing is downloaded)")
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise ImportError("ASR QC with synth.qc_asr_path needs the optional package faster-whisper: "
                          "pip install faster-whisper (or pass your own asr callable)") from e
    model = WhisperModel(model_path, device="cpu", compute_type="int8", cpu_threads=cpu_threads)

    def asr(wave: np.ndarray) -> str:
        segments, _ = model.transcribe(wave, language="en", beam_size=1)
        return " ".join(s.text.strip() for s in segments)

    _ASR_CACHE[model_path] = asr
    return asr


def run_qc(record: dict, *, asr: ASR | None = None, max_wer: float | None = None,
           clean: list[np.ndarray] | None = None, **basic) -> dict:
    """``{"passed": bool, "reasons": [...], **metrics}``; ASR runs only when the basic checks pass."""
    reasons, metrics = basic_checks(record, **basic)
    if asr is not None and max_wer is not None and not reasons:
        r, m = asr_checks(record, asr, max_wer, clean)
        reasons += r
        metrics.update(m)
    return {"passed": not reasons, "reasons": reasons, **metrics}
