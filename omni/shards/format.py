"""WebDataset shard files: deterministic bytes, atomic writes, sha256, and reading back.

A shard is a plain tar: members ``KEY.json``, ``KEY.user.flac``, ``KEY.assistant.flac``,
``KEY.user_units.npy``, ``KEY.assistant_units.npy``, sorted by key; optionally
``KEY.user_content.npy`` (OmniChat's precomputed Whisper-base features of the user turns,
float16, see ``omni.omnichat.precompute``). Tar headers carry no time, owner or mode that varies,
so the same rows always give the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE_HZ = 16000
FIELDS = ("json", "user.flac", "assistant.flac", "user_units.npy", "assistant_units.npy", "user_content.npy")


def encode_flac(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), SAMPLE_RATE_HZ, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> np.ndarray:
    wave, sr = sf.read(io.BytesIO(data), dtype="float32")
    if sr != SAMPLE_RATE_HZ:
        raise ValueError(f"shard audio at {sr} Hz, expected {SAMPLE_RATE_HZ}")
    return wave


def encode_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(path: str | os.PathLike, samples: list[dict[str, bytes]]) -> dict:
    """Write ``samples`` (each ``{"__key__": key, field: bytes}``) to ``path`` atomically.

    Returns the manifest entry: path, sha256, samples, bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for s in sorted(samples, key=lambda s: s["__key__"]):
            key = s["__key__"]
            if "." in key or "/" in key:
                raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
            for field in FIELDS:
                if field not in s:
                    continue
                data = s[field]
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"path": str(path), "sha256": sha256_file(path), "samples": len(samples), "bytes": path.stat().st_size}


def iter_shard(path, fields: tuple[str, ...] = FIELDS) -> Iterator[dict]:
    """Yield ``{"__key__", field: bytes...}`` per sample in a shard (only the asked fields).

    ``path``: a file path or a binary file object (read as a stream)."""
    current: dict | None = None
    with (tarfile.open(fileobj=path, mode="r|") if hasattr(path, "read") else tarfile.open(path, "r|")) as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, _, field = m.name.partition(".")
            if current is not None and current["__key__"] != key:
                yield current
                current = None
            if current is None:
                current = {"__key__": key}
            if field in fields:
                current[field] = tar.extractfile(m).read()
    if current is not None:
        yield current


def decode_sample(raw: dict, audio: bool = False) -> dict:
    """Shard sample bytes → dialogue record (see docs/architecture.md)."""
    rec = {"key": raw["__key__"], "meta": json.loads(raw["json"])}
    for ch in ("user", "assistant"):
        if f"{ch}_units.npy" in raw:
            rec[f"{ch}_units"] = decode_npy(raw[f"{ch}_units.npy"]).astype(np.int64)
        if audio and f"{ch}.flac" in raw:
            rec[ch] = decode_flac(raw[f"{ch}.flac"])
    if audio and "user_content.npy" in raw:  # OmniChat content features, read with the audio
        rec["user_content"] = decode_npy(raw["user_content.npy"])
    return rec
