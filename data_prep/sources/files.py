"""What every corpus reader shares: safe file opening, audio decoding with limits, 16 kHz mono,
paths kept inside a source's root, WebDataset-safe keys, and the one-turn utterance record.

Hostile files cost nothing: sizes are checked before reading, headers before decoding, and
decoding stops at ``data.max_duration_s`` (see :func:`read_audio`). Every failure is a
:class:`data_prep.validate.Reject` with a code that ``rejects.jsonl`` shows.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from data_prep.validate import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
    MAX_TEXT_BYTES,
    MIN_SAMPLE_RATE_HZ,
    Reject,
    check_duration,
    check_wave,
)
from omni.config import DataConfig

SAMPLE_RATE_HZ = 16000
_KEY_OK = re.compile(r"[^A-Za-z0-9_-]")


def make_key(source: str, ident: str) -> str:
    """WebDataset-safe key ``<source>-<ident>``; a short hash keeps sanitised ids unique."""
    raw = f"{source}-{ident}"
    key = _KEY_OK.sub("_", raw)
    return key if key == raw else f"{key}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def open_regular(path: Path, what: str, max_bytes: int):
    """Open ``path`` for reading, refusing anything but a regular file of at most ``max_bytes``.

    Checked on the opened descriptor (no race between check and read): a FIFO, device or
    directory is ``unreadable`` (O_NONBLOCK: opening a FIFO never blocks), 0 bytes is
    ``empty_file``, over ``max_bytes`` is ``too_large`` (from fstat: nothing is read).
    ``O_NOFOLLOW``: the final component must not be a symlink (callers pass resolved paths)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise Reject("unreadable", f"{what}: no such file") from None
    except OSError as e:
        raise Reject("unreadable", f"{what}: cannot open ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Reject("unreadable", f"{what}: not a regular file")
        if st.st_size == 0:
            raise Reject("empty_file", f"{what}: 0 bytes")
        if st.st_size > max_bytes:
            raise Reject("too_large", f"{what}: {st.st_size} bytes, over the limit of {max_bytes} bytes "
                                      f"(data.max_file_mb)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path: Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file (transcript, timings, metadata); ``bad_encoding`` when it is not UTF-8."""
    with open_regular(path, what, max_bytes) as f:
        raw = f.read(max_bytes + 1)
    return decode_utf8(raw, what)


def decode_utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject("bad_encoding", f"{what} is not UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r}); "
                                     "re-encode it as UTF-8") from None


def _wav_declared_frames(f, info) -> int | None:
    """Frames the RIFF header's ``data`` chunk promises (None when not a plain WAV)."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    for _ in range(64):                                   # a real WAV has a handful of chunks
        ch = f.read(8)
        if len(ch) < 8:
            return None
        cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
        if cid == b"data":
            width = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "PCM_U8": 1}.get(info.subtype)
            return size // (width * info.channels) if width else None
        f.seek(size + (size & 1), 1)
    return None


def _declared_frames(f, info) -> int | None:
    """What the header promises: the WAV ``data`` size, FLAC's STREAMINFO total; None if unknown."""
    if info.format == "WAV":
        return _wav_declared_frames(f, info)
    if info.format == "FLAC" and 0 < info.frames < 2 ** 36:
        return int(info.frames)
    return None


def read_audio(path: Path, cfg: DataConfig | None = None, what: str | None = None) -> tuple[np.ndarray, int]:
    """Decode any libsndfile format to float32 ``(frames, channels)``; raises Reject.

    Hostile files cost nothing: the size limit is checked before reading, the header (sample
    rate, channels, declared duration) before decoding, and decoding runs in blocks that stop at
    ``data.max_duration_s``, so a header that promises billions of samples allocates nothing."""
    cfg = cfg or DataConfig()
    what = what or str(path)
    with open_regular(path, what, int(cfg.max_file_mb * 2 ** 20)) as f:
        try:
            snd = sf.SoundFile(f)
        except Exception as e:  # noqa: BLE001 - libsndfile raises several types
            msg = str(e).split(": ", 1)[-1]
            if "not recognised" in msg.lower() or "unknown format" in msg.lower():
                raise Reject("not_audio", f"{what}: not an audio file ({msg})") from None
            raise Reject("unreadable", f"{what}: {msg}") from None
        with snd:
            sr, channels = int(snd.samplerate), int(snd.channels)
            if not MIN_SAMPLE_RATE_HZ <= sr <= MAX_SAMPLE_RATE_HZ:
                raise Reject("bad_format", f"{what}: sample rate {sr} Hz outside [{MIN_SAMPLE_RATE_HZ}, "
                                           f"{MAX_SAMPLE_RATE_HZ}]")
            if channels > MAX_CHANNELS:
                raise Reject("bad_format", f"{what}: {channels} channels, at most {MAX_CHANNELS} supported")
            cap = int(np.ceil(cfg.max_duration_s * sr)) + 1
            declared = _declared_frames(f, snd)
            if snd.format == "WAV" and declared is not None and declared > snd.frames:   # sizes that lie
                raise Reject("truncated", f"{what}: header declares {declared} frames, file holds {snd.frames}")
            if declared is not None and declared > cap:
                raise Reject("duration", f"{what}: header declares {declared} frames ({declared / sr:.1f} s), over "
                                         f"data.max_duration_s={cfg.max_duration_s} s; not decoded")
            blocks, n = [], 0
            try:
                snd.seek(0)
                while n < cap:
                    block = snd.read(min(sr, cap - n), dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    blocks.append(block)
                    n += len(block)
            except Exception as e:  # noqa: BLE001 - libsndfile raises several types
                err = str(e).split(": ", 1)[-1]
                if declared is not None and n < declared:
                    raise Reject("truncated", f"{what}: header declares {declared} frames, decoding failed after "
                                              f"{n} ({err})") from None
                raise Reject("unreadable", f"{what}: decoder failed ({err}); the file may be truncated") from None
    wave = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    if declared is not None and declared > wave.shape[0]:
        raise Reject("truncated", f"{what}: header declares {declared} frames, file holds {wave.shape[0]}")
    return wave, sr


def to_16k(wave: np.ndarray, sr_hz: int) -> np.ndarray:
    """Resample ``(frames,)`` or ``(frames, channels)`` to 16 kHz (soxr HQ), float32."""
    if sr_hz == SAMPLE_RATE_HZ:
        return np.ascontiguousarray(wave, dtype=np.float32)
    return soxr.resample(np.ascontiguousarray(wave), sr_hz, SAMPLE_RATE_HZ, quality="HQ").astype(np.float32)


def load_mono_16k(path: Path, cfg: DataConfig, what: str) -> np.ndarray:
    """Read, check (before resampling: NaN and clipping are about the original), mono, 16 kHz."""
    wave, sr = read_audio(path, cfg, what)
    check_wave(wave, cfg, what)
    check_duration(wave.shape[0] / sr, cfg, what)
    return to_16k(wave.mean(axis=1), sr)


def inside(root: Path, rel: str) -> Path:
    """``root/rel`` resolved (symlinks followed); Reject ``path_outside_root`` when it escapes ``root``.

    Only the path is resolved (``realpath``: no file is opened or read). A NUL byte is ``bad_row``;
    a path the OS cannot resolve is ``unreadable``."""
    if not isinstance(rel, str) or "\x00" in rel:
        raise Reject("bad_row", f"path {rel!r} is not a usable file name")
    root = root.resolve()
    try:
        p = (root / rel).resolve()
    except (OSError, ValueError, RuntimeError) as e:        # RuntimeError: symlink loop (strict resolvers)
        raise Reject("unreadable", f"{rel!r}: {e}") from None
    if not p.is_relative_to(root):
        raise Reject("path_outside_root", f"{rel!r} resolves to {p}, outside {root}")
    return p


def utterance_record(key: str, source: str, wave: np.ndarray, text: str, speaker: str | None,
                     emotion: str, extra: dict | None = None) -> dict:
    dur = round(len(wave) / SAMPLE_RATE_HZ, 4)
    turn = {"speaker": "assistant", "text": text, "spoken_text": text, "start_s": 0.0, "end_s": dur,
            "emotion": emotion, "pitch": "normal", "speed": "normal", "kind": "turn", "interrupted": False}
    if speaker is not None:
        turn["speaker_id"] = str(speaker)
    meta = {"id": key, "source": source, "task": "utterance", "scenario": "utterance",
            "sample_rate_hz": SAMPLE_RATE_HZ, "duration_s": dur, "turns": [turn], "events": [], **(extra or {})}
    return {"key": key, "meta": meta, "user": np.zeros_like(wave), "assistant": wave}
