"""Streaming training reader: shards → records, split by worker, shuffled, mixed by weight.

Plain Python (no Ray): each Ray Train worker builds one ``ShardStream`` with its rank.

* split: with at least as many shards as workers, worker r reads shards r, r+W, ...; with
  fewer, every worker reads every shard and keeps samples r, r+W, ... .
* mixing: each source is its own endless stream; the next record comes from source s with
  probability weight_s / sum(weights) (OmniChat's alpha), drawn from a seeded RNG.
* a shard that fails to read (or fails sha256 when ``verify``) is reported once and skipped.
"""
from __future__ import annotations

import json
import logging
import random
import zlib
from pathlib import Path
from typing import Iterator

from data_prep import shards as S

log = logging.getLogger("omni.reader")


def load_manifest(data_dir: str | Path) -> dict:
    p = Path(data_dir) / "manifest.json"
    if not p.exists():
        raise FileNotFoundError(f"no manifest at {p}: run `python -m jobs.prepare_data --config CFG` first")
    return json.loads(p.read_text())


class ShardStream:
    def __init__(self, data_dir: str | Path, split: str = "train", rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle_buffer: int = 64, weights: dict[str, float] | None = None,
                 verify: bool = False, loop: bool = True, audio: bool = False):
        self.data_dir = Path(data_dir)
        manifest = load_manifest(data_dir)
        self.by_source: dict[str, list[dict]] = {}
        for e in manifest["shards"]:
            if e["split"] == split:
                self.by_source.setdefault(e["source"], []).append(e)
        if not self.by_source:
            raise ValueError(f"no {split!r} shards in {data_dir}/manifest.json: the data set is empty for this "
                             f"split (more data, or a different data.heldout_fraction)")
        w = {name: info.get("weight", 1.0) for name, info in manifest["sources"].items()}
        w.update(weights or {})
        self.weights = {s: w.get(s, 1.0) for s in self.by_source}
        self.rank, self.world, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.verify, self.loop, self.audio = shuffle_buffer, verify, loop, audio
        self.skipped: dict[str, str] = {}
        self.position = {"records": 0, "epoch": {s: 0 for s in self.by_source}}

    # one source, endless (or one pass)
    def _source_iter(self, source: str) -> Iterator[dict]:
        entries = self.by_source[source]
        epoch = 0
        while True:
            rng = random.Random(zlib.crc32(f"{self.seed}/{source}/{epoch}".encode()))
            order = entries[:]
            rng.shuffle(order)
            if len(order) >= self.world:
                mine, stride = order[self.rank::self.world], 1
            else:
                mine, stride = order, self.world
            n = 0
            yielded = 0
            for e in mine:
                for raw in self._read(e):
                    if stride == 1 or n % stride == self.rank:
                        yielded += 1
                        yield S.decode_sample(raw, audio=self.audio)
                    n += 1
            self.position["epoch"][source] = epoch = epoch + 1
            if not self.loop:
                return
            if yielded == 0:
                raise RuntimeError(f"source {source!r}: worker {self.rank} got no readable samples "
                                   f"(skipped shards: {self.skipped})")

    def _read(self, entry: dict) -> Iterator[dict]:
        path = self.data_dir / entry["path"]
        if str(path) in self.skipped:
            return
        try:
            if self.verify and S.sha256_file(path) != entry["sha256"]:
                raise ValueError("sha256 mismatch")
            items = list(S.iter_shard(path, fields=S.FIELDS if self.audio else
                                      ("json", "user_units.npy", "assistant_units.npy")))
        except Exception as e:
            self.skipped[str(path)] = f"{type(e).__name__}: {e}"
            log.warning("skipping unreadable shard %s: %s", path, e)
            return
        yield from items

    def __iter__(self) -> Iterator[dict]:
        rng = random.Random(self.seed * 1000 + self.rank)
        streams = {s: self._source_iter(s) for s in self.by_source}
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
