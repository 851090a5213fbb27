"""Pitch and loudness transforms of synthesised speech, shared by the TTS backends.

All keep the length of the audio exactly (word timings stay valid) and are deterministic (Praat's
random generator is reseeded before each transform).

- :func:`change_voice`: Praat's "Change gender" (pitch-synchronous overlap-add, through
  ``praat-parselmouth``): a new pitch median (semitones from the utterance's own), a pitch range
  factor (deviations from the median scaled; < 1 flattens, > 1 widens), and a formant shift
  ratio (vocal-tract length: a different-sounding voice from the same speaker).
- :func:`contour`: Praat's Manipulation with a PitchTier formula: a linear glide over the
  utterance (semitones from its start to its end, centred) plus a vibrato (semitones, Hz).
- :func:`tremolo`: amplitude modulation (depth, Hz).
- :data:`EMOTION_CUES` + :func:`emotion_cues`: the cues a backend cannot make itself, applied
  to espeak-ng and Piper alike, so an emotion sounds the same way across backends and voices:
  surprised rises, sad falls, fearful trembles (pitch and loudness at 6 Hz).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SR = 16000
F0_FLOOR_HZ, F0_CEIL_HZ = 60.0, 500.0


def _praat():
    """(parselmouth, call) with Praat's random generator reseeded: "Change gender" draws random
    numbers (two runs on the same sound differed by up to 0.1), so every transform starts from
    the same seed and gives the same samples."""
    try:
        import parselmouth
        from parselmouth.praat import call, run
    except ImportError as e:
        raise RuntimeError(f"pitch transforms need the package praat-parselmouth ({e}): run `make install`") from None
    run("random_initializeWithSeedUnsafelyButPredictably (1)")
    return parselmouth, call


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, np.float32).reshape(-1)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _median_hz(snd, call) -> float:
    pitch = snd.to_pitch(0.01, F0_FLOOR_HZ, F0_CEIL_HZ)
    return float(call(pitch, "Get quantile", 0, 0, 0.5, "Hertz"))


def change_voice(wave: np.ndarray, semitones: float = 0.0, range_factor: float = 1.0,
                 formant_ratio: float = 1.0, sr: int = SR) -> np.ndarray:
    """Praat "Change gender": pitch median moved by ``semitones``, range scaled, formants shifted."""
    if abs(semitones) < 1e-6 and abs(range_factor - 1) < 1e-6 and abs(formant_ratio - 1) < 1e-6:
        return np.asarray(wave, np.float32)
    parselmouth, call = _praat()
    snd = parselmouth.Sound(np.asarray(wave, np.float64), sr)
    med = _median_hz(snd, call)
    if not np.isfinite(med) or med <= 0:  # nothing voiced: leave it
        return np.asarray(wave, np.float32)
    out = call(snd, "Change gender", F0_FLOOR_HZ, F0_CEIL_HZ, float(formant_ratio),
               float(med * 2 ** (semitones / 12)), float(range_factor), 1.0)
    return _fit(out.values[0], len(wave))


def contour(wave: np.ndarray, glide_st: float = 0.0, vibrato_st: float = 0.0, vibrato_hz: float = 6.0,
            sr: int = SR) -> np.ndarray:
    """F0 glide (``glide_st`` semitones from start to end, zero at the middle) and vibrato."""
    if abs(glide_st) < 1e-6 and abs(vibrato_st) < 1e-6:
        return np.asarray(wave, np.float32)
    parselmouth, call = _praat()
    snd = parselmouth.Sound(np.asarray(wave, np.float64), sr)
    manip = call(snd, "To Manipulation", 0.01, F0_FLOOR_HZ, F0_CEIL_HZ)
    tier = call(manip, "Extract pitch tier")
    dur = max(len(wave) / sr, 1e-3)
    call(tier, "Formula", f"self * 2^(({glide_st} * (x / {dur} - 0.5) + "
                          f"{vibrato_st} * sin(2 * pi * {vibrato_hz} * x)) / 12)")
    call([tier, manip], "Replace pitch tier")
    out = call(manip, "Get resynthesis (overlap-add)")
    return _fit(out.values[0], len(wave))


def tremolo(wave: np.ndarray, depth: float = 0.0, hz: float = 6.0, sr: int = SR) -> np.ndarray:
    """Gain between 1 - ``depth`` and 1 at ``hz``."""
    if depth <= 0:
        return np.asarray(wave, np.float32)
    t = np.arange(len(wave)) / sr
    return (wave * (1 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * hz * t)))).astype(np.float32)


@dataclass(frozen=True)
class Cues:
    glide_st: float = 0.0     # F0 glide over the utterance (semitones, start -> end)
    vibrato_st: float = 0.0   # F0 vibrato amplitude (semitones) at 6 Hz
    tremolo: float = 0.0      # loudness modulation depth at 6 Hz


EMOTION_CUES: dict[str, Cues] = {
    "neutral": Cues(),
    "happy": Cues(),
    "sad": Cues(glide_st=-3.0),
    "angry": Cues(),
    "surprised": Cues(glide_st=7.0),
    "fearful": Cues(vibrato_st=1.2, tremolo=0.3),
    "disgusted": Cues(glide_st=-1.5),
}


def emotion_cues(wave: np.ndarray, emotion: str, sr: int = SR) -> np.ndarray:
    """Apply :data:`EMOTION_CUES` ``[emotion]`` (glide, vibrato, tremolo)."""
    if emotion not in EMOTION_CUES:
        raise ValueError(f"unknown emotion {emotion!r}: choose one of {', '.join(EMOTION_CUES)}")
    c = EMOTION_CUES[emotion]
    return tremolo(contour(wave, c.glide_st, c.vibrato_st, sr=sr), c.tremolo, sr=sr)
