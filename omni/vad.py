"""Voice activity: the one module that answers "is someone speaking here?" for the whole project.

Back-ends (segments are ``(start_s, end_s)`` on the clip's timeline):

* ``silero`` - Silero VAD v6, the ONNX model that faster-whisper ships (run by onnxruntime, no
  download). The default of :func:`speech_segments`. :data:`FDB_SILERO` are the settings
  Full-Duplex-Bench scores with: its ``eval_*.py`` scripts call the silero-vad package's
  ``get_speech_timestamps(wav, model)`` with its defaults (threshold 0.5, speech >= 250 ms,
  silences >= 100 ms split segments, 30 ms padding). A pure tone or noise is not speech to it.
  ~0.2 s per 4 s of audio on one core.
* ``energy`` - frames whose RMS level is above an absolute threshold (dBFS, full scale = 1.0).
  Needs no model and is exact on constructed signals, but any loud sound counts as speech.
  A documented option (``vad="energy"`` in :mod:`omni.metrics.fdb`), not what the benchmark does.

Two narrower rules live here too, so that every threshold in the project has one home:

* :func:`voiced_span` - first to last frame within ``rel_db`` of the loudest frame: the voiced
  region of one clean TTS utterance (exact edges; used by the synthetic dialogue assembly and
  the Full-Duplex-Bench task sets).
* :class:`EnergyGate` - a causal per-frame loudness decision for streaming policies (the VAD-200
  baseline): it sees each 20 ms frame once, as it arrives, and never looks ahead.

Who uses which (the callers document their own settings):

=====================================================  ==========================================
``omni.metrics.fdb`` (scoring), transcript gating      ``silero`` with :data:`FDB_SILERO`
``data_prep.sources.stereo`` (turns of untranscribed   ``silero``, silences >= 300 ms split turns,
stereo dialogues)                                      turns >= 100 ms
``omni.metrics.duplex.energy_segments`` (evaluation's  ``energy``, 40 ms frames, -45 dBFS, gaps
turn-taking timeline of the engine's output)           <= 0.2 s merged
``data_prep.synth.duplex.voiced_span`` (TTS output)    :func:`voiced_span`, 5 ms frames, -40 dB
``omni.baselines.Vad200Policy``                        :class:`EnergyGate`, 20 ms frames, -45 dBFS
=====================================================  ==========================================
"""
from __future__ import annotations

import numpy as np
import soxr

Segment = tuple[float, float]
SILERO_RATE_HZ = 16000
FDB_SILERO = {"threshold": 0.5, "min_speech_ms": 250, "min_silence_ms": 100, "pad_ms": 30}
"""Full-Duplex-Bench's Silero settings (the silero-vad package's defaults, which its scripts use)."""


def _mono(wave) -> np.ndarray:
    return np.asarray(wave, np.float32).reshape(-1)


# ------------------------------------------------------------------------------- Silero
def silero_segments(wave, sample_rate_hz: int, *, threshold: float = 0.5, min_speech_ms: int = 250,
                    min_silence_ms: int = 100, pad_ms: int = 30) -> list[Segment]:
    """Speech segments by Silero VAD v6 (faster-whisper's copy); defaults = :data:`FDB_SILERO`.
    Audio at another rate is resampled to 16 kHz first (the model's rate)."""
    # faster-whisper loads ctranslate2 and onnxruntime: imported on first use, not by every importer of omni
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    x = _mono(wave)
    if sample_rate_hz != SILERO_RATE_HZ:
        x = soxr.resample(x, sample_rate_hz, SILERO_RATE_HZ).astype(np.float32)
    if x.size == 0:
        return []
    opts = VadOptions(threshold=threshold, min_speech_duration_ms=min_speech_ms,
                      min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms)
    return [(s["start"] / SILERO_RATE_HZ, s["end"] / SILERO_RATE_HZ) for s in get_speech_timestamps(x, opts)]


# ------------------------------------------------------------------------------- energy
def frame_levels_db(wave, sample_rate_hz: int, frame_ms: float) -> np.ndarray:
    """RMS level of each whole ``frame_ms`` frame in dB re full scale (a trailing part frame is dropped)."""
    x = np.asarray(wave, np.float64).reshape(-1)
    hop = max(1, round(sample_rate_hz * frame_ms / 1000))
    n = len(x) // hop
    return 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-20)


def merge_segments(segments, gap_s: float) -> list[Segment]:
    """Sort and merge segments whose gap is <= ``gap_s``."""
    out: list[list[float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in segments):
        if out and s - out[-1][1] <= gap_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of the True runs of a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(active, np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def energy_segments(wave, sample_rate_hz: int, *, frame_ms: float = 20.0, threshold_dbfs: float = -45.0,
                    min_speech_s: float = 0.1, merge_gap_s: float = 0.2) -> list[Segment]:
    """Frames with RMS above ``threshold_dbfs`` (absolute: a silent channel stays silent, where a
    threshold relative to the peak would promote noise to speech), gaps <= ``merge_gap_s`` merged,
    segments shorter than ``min_speech_s`` dropped."""
    hop = max(1, round(sample_rate_hz * frame_ms / 1000))
    loud = frame_levels_db(wave, sample_rate_hz, frame_ms) > threshold_dbfs
    segs = [(a * hop / sample_rate_hz, b * hop / sample_rate_hz) for a, b in runs(loud)]
    return [s for s in merge_segments(segs, merge_gap_s) if s[1] - s[0] >= min_speech_s]


BACKENDS = {"silero": silero_segments, "energy": energy_segments}


def speech_segments(wave, sample_rate_hz: int, backend: str = "silero", **settings) -> list[Segment]:
    """Speech segments by ``backend`` (``silero`` or ``energy``) with that back-end's ``settings``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown VAD back-end {backend!r}: choose one of {', '.join(BACKENDS)}")
    return BACKENDS[backend](wave, sample_rate_hz, **settings)


# ------------------------------------------------------------------------------- narrower rules
def voiced_span(wave, sample_rate_hz: int, *, frame_ms: float = 5.0, rel_db: float = -40.0) -> Segment:
    """``(onset_s, offset_s)`` of one clean utterance: first to last ``frame_ms`` frame whose level is
    within ``rel_db`` of the loudest frame; ``(0, duration)`` when there is no whole frame or no
    level at all."""
    x = np.asarray(wave, np.float64).reshape(-1)
    hop = int(sample_rate_hz * frame_ms / 1000)
    n = len(x) // hop if hop else 0
    if n == 0:
        return 0.0, len(x) / sample_rate_hz
    env = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(env / (env.max() + 1e-12)) > rel_db)
    if len(loud) == 0:
        return 0.0, len(x) / sample_rate_hz
    return loud[0] * frame_ms / 1000, (loud[-1] + 1) * frame_ms / 1000


class EnergyGate:
    """Causal loudness decision per frame: :meth:`push` takes any amount of audio and returns one
    bool per ``frame_ms`` frame it completed (RMS level > ``threshold_dbfs``); a part frame waits
    for the next push. It never looks ahead."""

    def __init__(self, sample_rate_hz: int = 16000, frame_ms: float = 20.0, threshold_dbfs: float = -45.0):
        self.hop = int(sample_rate_hz * frame_ms / 1000)
        self.sample_rate_hz, self.frame_ms, self.threshold_dbfs = sample_rate_hz, frame_ms, threshold_dbfs
        self._buf = np.zeros(0, np.float32)

    def push(self, pcm) -> np.ndarray:
        self._buf = np.concatenate([self._buf, _mono(pcm)])
        n = len(self._buf) // self.hop
        frames, self._buf = self._buf[: n * self.hop], self._buf[n * self.hop:]
        return frame_levels_db(frames, self.sample_rate_hz, self.frame_ms) > self.threshold_dbfs
