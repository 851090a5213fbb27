"""Speech tokenizer protocol, input validation and the on-disk descriptor.

Every speech tokenizer in omni maps 16 kHz mono float32 audio to a 1-D ``np.int64`` array of
units and back. Conventions shared by all implementations:

* ``hop_samples`` audio samples per unit (640 at 16 kHz / 25 Hz).
* ``encode(wave)`` returns exactly ``len(wave) // hop_samples`` units (floor): a trailing
  partial frame (< 40 ms) is dropped. Audio shorter than one frame is an error
  (:class:`SpeechTokenizerError`), never an empty or made-up sequence.
* ``decode(units)`` returns exactly ``len(units) * hop_samples`` samples.
* ``silence_unit`` is the unit that encodes digital silence; other modules pad with it.
* A saved tokenizer is a folder with ``speech_tokenizer.json`` (``{"kind": ..., ...}``) that
  :func:`omni.speech_tokenizer.load_speech_tokenizer` dispatches on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE_HZ = 16000
TOKENIZER_JSON = "speech_tokenizer.json"


class SpeechTokenizerError(ValueError):
    """Bad input or a bad/missing tokenizer folder; the message says what and how to fix."""


@runtime_checkable
class StreamEncoder(Protocol):
    def feed(self, wave_chunk: np.ndarray) -> np.ndarray:
        """Add audio (any length, may be empty); return the units of frames now complete."""

    def flush(self) -> np.ndarray:
        """Units still held back at the end of the stream (none for causal encoders)."""


@runtime_checkable
class StreamDecoder(Protocol):
    def feed(self, units: np.ndarray) -> np.ndarray:
        """Add units (any count); return the float32 audio that is now final."""

    def flush(self) -> np.ndarray:
        """Return the remaining audio; afterwards total output == units fed * hop_samples."""


@runtime_checkable
class SpeechTokenizer(Protocol):
    kind: str
    sample_rate: int          # Hz, always 16000 for the audio handed in/out
    frame_rate_hz: float      # units per second
    hop_samples: int          # samples per unit (sample_rate / frame_rate_hz)
    num_units: int            # valid units are 0 .. num_units-1
    silence_unit: int         # unit of digital silence

    def encode(self, wave: np.ndarray) -> np.ndarray: ...
    def decode(self, units: np.ndarray) -> np.ndarray: ...
    def save(self, directory: str | Path) -> Path: ...
    def stream_encoder(self) -> StreamEncoder: ...
    def stream_decoder(self) -> StreamDecoder: ...


# ----------------------------------------------------------------------------- checks
def check_wave(wave, *, min_samples: int = 0, name: str = "wave") -> np.ndarray:
    """Validate mono float audio; returns it as a C-contiguous float32 1-D array.

    Accepts float32/float64 numpy arrays only (integer PCM must be scaled by the caller,
    e.g. ``pcm16 / 32768``), rejects NaN/inf, and requires ``>= min_samples`` samples.
    """
    if not isinstance(wave, np.ndarray):
        raise SpeechTokenizerError(
            f"{name} must be a numpy float32 array, got {type(wave).__name__}")
    if wave.dtype.kind != "f":
        raise SpeechTokenizerError(
            f"{name} has dtype {wave.dtype}; expected float32 in [-1, 1] "
            "(convert PCM16 with wave.astype(np.float32) / 32768)")
    if wave.ndim != 1:
        raise SpeechTokenizerError(
            f"{name} has shape {wave.shape}; expected 1-D mono audio (mix or pick a channel)")
    if wave.size < min_samples:
        raise SpeechTokenizerError(
            f"{name} has {wave.size} samples, shorter than one frame ({min_samples} samples = "
            f"{1000 * min_samples / SAMPLE_RATE_HZ:.0f} ms at 16 kHz); pad it or skip it")
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise SpeechTokenizerError(f"{name} contains NaN or inf samples; clean the audio first")
    return wave


def check_units(units, num_units: int, *, name: str = "units") -> np.ndarray:
    """Validate a 1-D integer unit array with values in ``[0, num_units)``; returns int64."""
    if isinstance(units, (list, tuple)):
        units = np.asarray(units, dtype=np.int64) if len(units) else np.zeros(0, np.int64)
    if not isinstance(units, np.ndarray):
        raise SpeechTokenizerError(f"{name} must be a numpy int array, got {type(units).__name__}")
    if units.dtype.kind not in "iu":
        raise SpeechTokenizerError(f"{name} has dtype {units.dtype}; expected integer units")
    if units.ndim != 1:
        raise SpeechTokenizerError(f"{name} has shape {units.shape}; expected a 1-D sequence")
    units = units.astype(np.int64, copy=False)
    if units.size and (units.min() < 0 or units.max() >= num_units):
        bad = units[(units < 0) | (units >= num_units)]
        raise SpeechTokenizerError(
            f"{name} out of range: {bad.size} value(s) such as {int(bad[0])} not in "
            f"[0, {num_units}); were they produced by a different tokenizer?")
    return units


# ------------------------------------------------------------------------- descriptor
def write_descriptor(directory: str | Path, info: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TOKENIZER_JSON).write_text(json.dumps(info, indent=2, sort_keys=True))
    return directory


def read_descriptor(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.exists():
        raise SpeechTokenizerError(f"speech tokenizer path {directory} does not exist")
    path = directory / TOKENIZER_JSON
    if not path.is_file():
        raise SpeechTokenizerError(
            f"{path} not found: {directory} is not a saved omni speech tokenizer "
            "(save one with tokenizer.save(dir), or use S3Tokenizer/MimiTokenizer.from_pretrained)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SpeechTokenizerError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(info, dict) or "kind" not in info:
        raise SpeechTokenizerError(f"{path} has no 'kind' field")
    return info


# --------------------------------------------------------- generic windowed streaming
class WindowedStreamEncoder:
    """Streaming for tokenizers without a causal encoder (S3, Mimi adapters).

    Buffers audio and encodes it ``window_frames`` frames at a time, each window on its own.
    Units therefore arrive with up to one window of latency and can differ from
    ``encode(whole)`` near window edges (the model sees no cross-window context).
    Call ``flush()`` to encode the remaining whole frames.
    """

    def __init__(self, tokenizer, window_frames: int):
        self.tok, self.window = tokenizer, int(window_frames)
        self._buf = np.zeros(0, np.float32)

    def feed(self, wave_chunk: np.ndarray) -> np.ndarray:
        chunk = check_wave(wave_chunk, name="wave_chunk")
        self._buf = np.concatenate([self._buf, chunk])
        n = self.window * self.tok.hop_samples
        out = []
        while self._buf.size >= n:
            out.append(self.tok.encode(self._buf[:n]))
            self._buf = self._buf[n:]
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def flush(self) -> np.ndarray:
        n = (self._buf.size // self.tok.hop_samples) * self.tok.hop_samples
        units = self.tok.encode(self._buf[:n]) if n else np.zeros(0, np.int64)
        self._buf = self._buf[n:]
        return units


class WindowedStreamDecoder:
    """Decodes ``window_units`` units at a time (adapters whose decoder is not causal)."""

    def __init__(self, tokenizer, window_units: int):
        self.tok, self.window = tokenizer, int(window_units)
        self._buf = np.zeros(0, np.int64)

    def feed(self, units: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate([self._buf, check_units(units, self.tok.num_units)])
        out = []
        while self._buf.size >= self.window:
            out.append(self.tok.decode(self._buf[:self.window]))
            self._buf = self._buf[self.window:]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        out = self.tok.decode(self._buf) if self._buf.size else np.zeros(0, np.float32)
        self._buf = np.zeros(0, np.int64)
        return out
