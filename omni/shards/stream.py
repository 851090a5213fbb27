"""Streaming training reader: shards → records, split by node and worker, shuffled, mixed by weight.

Plain Python (no Ray): each Ray Train worker builds one ``ShardStream`` with its rank; inside a
``torch.utils.data.DataLoader`` worker the stream splits further by loader worker on its own.

* where: ``data_dir`` is a local folder or any pyarrow filesystem URI (``s3://bucket/data``,
  ``gs://…``, ``file:///…``); shards are read through ``pyarrow.fs`` (one sequential read each).
* split: the readers are ``world_size × loader workers`` slots; slot ``i`` reads shards
  ``i, i+N, …`` of each source; a source with fewer shards than slots is read by every slot,
  which keeps samples ``i, i+N, …`` instead. Slots never overlap and together cover every sample.
* shuffle: shard order reshuffled every epoch (seeded), then a ``shuffle_buffer``-record buffer.
* mixing: each source is its own endless stream; the next record comes from source ``s`` with
  probability ``weight_s / sum(weights)`` (OmniChat's alpha), drawn from a seeded RNG.
* failure: a shard that fails to read or decode (or, with ``verify``, fails the manifest's sha256
  on its first read by this stream) is logged with a warning naming it, listed in
  ``stream.skipped`` (path → reason) and never read again; a source whose every shard failed is
  dropped; when no source is left the stream raises instead of hanging. Training verifies
  (``verify=True``) and reports ``len(skipped)`` as the metric ``data/corrupt_shards_skipped``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import sys
import zlib
from collections.abc import Iterator

from pyarrow import fs

from omni.shards import format as S

log = logging.getLogger("omni.reader")
UNIT_FIELDS = ("json", "user_units.npy", "assistant_units.npy")


def _fs(data_dir: str):
    """``(pyarrow filesystem, base path)`` for a local path or a URI."""
    data_dir = str(data_dir)
    if "://" in data_dir:
        filesystem, base = fs.FileSystem.from_uri(data_dir)
        return filesystem, base.rstrip("/")
    return fs.LocalFileSystem(), os.path.abspath(data_dir)


def _read_bytes(filesystem, path: str) -> bytes:
    with filesystem.open_input_stream(path) as f:
        return f.read()


def load_manifest(data_dir) -> dict:
    filesystem, base = _fs(data_dir)
    try:
        return json.loads(_read_bytes(filesystem, f"{base}/manifest.json"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no manifest at {data_dir}/manifest.json: run `python -m jobs.prepare_data "
                                f"--config CFG` first") from None


def _loader_worker() -> tuple[int, int]:
    """``(id, count)`` of the torch DataLoader worker running this code, ``(0, 1)`` outside one."""
    if "torch" not in sys.modules:  # no torch loaded: not inside a DataLoader worker
        return 0, 1
    from torch.utils.data import get_worker_info  # torch is loaded already (checked above): free
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class ShardStream:
    """Iterable of decoded records (``omni.shards.format.decode_sample``) for one reader slot."""

    def __init__(self, data_dir, split: str = "train", rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle_buffer: int = 64, weights: dict[str, float] | None = None,
                 verify: bool = False, loop: bool = True, audio: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.data_dir = str(data_dir)
        self.fs, self.base = _fs(self.data_dir)
        manifest = load_manifest(self.data_dir)
        self.by_source: dict[str, list[dict]] = {}
        for e in manifest["shards"]:
            if e["split"] == split:
                self.by_source.setdefault(e["source"], []).append(e)
        if not self.by_source:
            raise ValueError(f"no {split!r} shards in {data_dir}/manifest.json: the data set is empty for this "
                             f"split (more data, or a different data.heldout_fraction)")
        w = {name: info.get("weight", 1.0) for name, info in manifest["sources"].items()}
        w.update(weights or {})
        self.weights = {s: float(w.get(s, 1.0)) for s in self.by_source}
        bad = {s: v for s, v in self.weights.items() if not v > 0}
        if bad:
            raise ValueError(f"mixing weights must be > 0, got {bad}")
        self.rank, self.world, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.verify, self.loop, self.audio = max(1, shuffle_buffer), verify, loop, audio
        self.skipped: dict[str, str] = {}
        self._verified: set[str] = set()
        self.position = {"records": 0, "epoch": {s: 0 for s in self.by_source}}
        self.fields = S.FIELDS if audio else UNIT_FIELDS

    # one source, endless (or one pass)
    def _source_iter(self, source: str, slot: int, slots: int) -> Iterator[dict]:
        entries = sorted(self.by_source[source], key=lambda e: e["path"])
        epoch = 0
        while True:
            order = entries[:]
            random.Random(zlib.crc32(f"{self.seed}/{source}/{epoch}".encode())).shuffle(order)
            if len(order) >= slots:
                mine, stride = order[slot::slots], 1
            else:
                mine, stride = order, slots
            n, yielded, readable = 0, 0, 0
            for e in mine:
                samples = self._read(e)
                if samples is None:
                    continue
                readable += 1
                for rec in samples:
                    if stride == 1 or n % stride == slot:
                        yielded += 1
                        yield rec
                    n += 1
            self.position["epoch"][source] = epoch = epoch + 1
            if not self.loop:
                return
            if yielded == 0:  # nothing readable for this slot: drop the source instead of spinning
                log.warning("source %s: reader slot %d/%d has no readable samples (skipped: %s); dropping it",
                            source, slot, slots, self.skipped)
                return

    def _read(self, entry: dict) -> list[dict] | None:
        """All decoded samples of one shard, or None (reported once) when it cannot be read."""
        path = f"{self.base}/{entry['path']}"
        if path in self.skipped:
            return None
        try:
            data = _read_bytes(self.fs, path)
            # manifests always carry a digest (a hand-made one may not); a shard is hashed on its first
            # read by this stream only: later epochs re-read it, but hashing every pass cost ~3 ms per
            # 5 MB shard (a decode failure still catches a later truncation)
            if self.verify and entry.get("sha256") and path not in self._verified:
                got = hashlib.sha256(data).hexdigest()
                if got != entry["sha256"]:
                    raise ValueError(f"sha256 mismatch: manifest {entry['sha256'][:12]}…, file {got[:12]}…")
                self._verified.add(path)
            # decode the whole shard now: a corrupt member fails here, before any of its samples is used
            samples = [S.decode_sample(s, audio=self.audio) for s in S.iter_shard(io.BytesIO(data), fields=self.fields)]
        except Exception as e:  # noqa: BLE001 - any failure of one shard: report and skip it
            self.skipped[path] = f"{type(e).__name__}: {e}"
            log.warning("skipping unreadable shard %s: %s", path, e)
            return None
        return samples

    def __iter__(self) -> Iterator[dict]:
        wid, nw = _loader_worker()
        slot, slots = self.rank * nw + wid, self.world * nw
        rng = random.Random(zlib.crc32(f"{self.seed}/mix/{slot}".encode()))
        streams = {s: self._source_iter(s, slot, slots) for s in sorted(self.by_source)}
        buffer: list[dict] = []
        while streams:
            names = list(streams)
            src = rng.choices(names, weights=[self.weights[n] for n in names])[0]
            try:
                rec = next(streams[src])
            except StopIteration:
                del streams[src]
                continue
            buffer.append(rec)
            if len(buffer) >= self.shuffle_buffer:
                self.position["records"] += 1
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        for rec in buffer:
            self.position["records"] += 1
            yield rec
        if self.loop:  # an endless stream only ends when every source became unreadable
            raise RuntimeError(f"no readable samples left in {self.data_dir} for reader slot {slot}/{slots} "
                               f"(skipped shards: {self.skipped})")
