"""Training reader on hand-made shards: worker split, mixing weights, shuffle, corrupt shards,
sha256 verification and pyarrow filesystem URIs (no Ray, no pipeline run)."""
from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from omni.shards import stream as R
from omni.shards import format as S


def make_data(root: Path, shards: dict[str, int], per_shard: int = 5, weights: dict | None = None) -> Path:
    """``shards``: source -> number of train shards, ``per_shard`` samples each; a valid manifest."""
    entries, sources = [], {}
    for src, n in shards.items():
        for i in range(n):
            samples = []
            for j in range(per_shard):
                key = f"{src}-{i:03d}-{j:03d}"
                meta = {"id": key, "source": src, "duration_s": 1.0, "turns": []}
                units = S.encode_npy(np.full(25, i * per_shard + j, np.int16))
                samples.append({"__key__": key, "json": json.dumps(meta).encode(), "user_units.npy": units,
                                "assistant_units.npy": units})
            e = S.write_shard(root / "shards" / "train" / f"{src}-{i:06d}.tar", samples)
            e.update(path=str(Path(e["path"]).relative_to(root)), source=src, split="train")
            entries.append(e)
        sources[src] = {"weight": (weights or {}).get(src, 1.0)}
    (root / "manifest.json").write_text(json.dumps({"shards": entries, "sources": sources}))
    return root


def keys(stream) -> list[str]:
    return [r["key"] for r in stream]


@pytest.mark.parametrize("n_shards,world", [(6, 1), (6, 2), (6, 4), (2, 3)])
def test_workers_partition_every_sample_exactly_once(tmp_path, n_shards, world):
    make_data(tmp_path, {"a": n_shards, "b": 1})
    everything = sorted(keys(R.ShardStream(tmp_path, rank=0, world_size=1, loop=False)))
    assert len(everything) == (n_shards + 1) * 5
    parts = [keys(R.ShardStream(tmp_path, rank=r, world_size=world, seed=3, loop=False)) for r in range(world)]
    assert sorted(k for p in parts for k in p) == everything  # no overlap, nothing missing
    assert all(parts)


def test_dataloader_workers_split_further(tmp_path, monkeypatch):
    make_data(tmp_path, {"a": 4})
    got = []
    for wid in range(2):
        monkeypatch.setattr(R, "_loader_worker", lambda wid=wid: (wid, 2))
        got.append(keys(R.ShardStream(tmp_path, rank=1, world_size=2, loop=False)))
    assert not set(got[0]) & set(got[1]) and len(got[0]) == len(got[1]) == 5  # rank 1 owns slots 2 and 3


def test_mixing_weights_are_honoured(tmp_path):
    make_data(tmp_path, {"a": 2, "b": 2, "c": 1}, weights={"a": 6.0, "b": 3.0, "c": 1.0})
    stream = iter(R.ShardStream(tmp_path, seed=7, shuffle_buffer=16))
    counts = Counter(next(stream)["meta"]["source"] for _ in range(3000))
    for src, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(counts[src] / 3000 - share) < 0.03, counts
    override = iter(R.ShardStream(tmp_path, seed=7, weights={"a": 1.0, "b": 1.0, "c": 2.0}))
    counts = Counter(next(override)["meta"]["source"] for _ in range(2000))
    assert abs(counts["c"] / 2000 - 0.5) < 0.035, counts


def test_shuffle_is_seeded_and_changes_order(tmp_path):
    make_data(tmp_path, {"a": 4})
    a = keys(R.ShardStream(tmp_path, seed=1, shuffle_buffer=8, loop=False))
    assert a == keys(R.ShardStream(tmp_path, seed=1, shuffle_buffer=8, loop=False))
    assert a != keys(R.ShardStream(tmp_path, seed=2, shuffle_buffer=8, loop=False))
    assert a != sorted(a) and sorted(a) == sorted(keys(R.ShardStream(tmp_path, shuffle_buffer=1, loop=False)))


def _first_n_with_timeout(stream, n, timeout_s=20.0):
    out, err = [], []

    def go():
        try:
            it = iter(stream)
            for _ in range(n):
                out.append(next(it))
        except Exception as e:  # noqa: BLE001 - reported to the test
            err.append(e)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), "reader hung"
    return out, err


def test_corrupt_shard_is_reported_and_skipped(tmp_path):
    make_data(tmp_path, {"a": 3, "b": 1})
    bad = tmp_path / "shards/train/a-000001.tar"
    bad.write_bytes(bad.read_bytes()[:700])  # truncated mid-member
    s = R.ShardStream(tmp_path, loop=False)
    got = keys(s)
    assert sorted(got) == sorted(f"a-{i:03d}-{j:03d}" for i in (0, 2) for j in range(5)) + [f"b-000-{j:03d}" for j in range(5)]
    assert list(s.skipped) == [f"{tmp_path}/shards/train/a-000001.tar"]
    # endless stream keeps going on the readable shards
    out, err = _first_n_with_timeout(R.ShardStream(tmp_path, loop=True), 200)
    assert len(out) == 200 and not err
    # every shard unreadable: a clear error, never a hang
    for p in (tmp_path / "shards/train").glob("*.tar"):
        p.write_bytes(b"garbage" * 10)
    out, err = _first_n_with_timeout(R.ShardStream(tmp_path, loop=True), 10)
    assert not out and isinstance(err[0], RuntimeError) and "no readable samples" in str(err[0])


def test_sha256_verification_catches_silent_corruption(tmp_path):
    make_data(tmp_path, {"a": 2})
    p = tmp_path / "shards/train/a-000000.tar"
    data = bytearray(p.read_bytes())
    i = data.index(b"\x93NUMPY") + 200  # inside the array payload: the tar still parses
    data[i] ^= 0xFF
    p.write_bytes(bytes(data))
    assert len(keys(R.ShardStream(tmp_path, loop=False))) == 10  # unnoticed without verification
    s = R.ShardStream(tmp_path, loop=False, verify=True)
    assert len(keys(s)) == 5 and "sha256 mismatch" in next(iter(s.skipped.values()))


def test_pyarrow_file_uri_reads_the_same_records(tmp_path):
    make_data(tmp_path, {"a": 2, "b": 1})
    local = keys(R.ShardStream(tmp_path, seed=5, loop=False))
    uri = keys(R.ShardStream(f"file://{tmp_path}", seed=5, loop=False, verify=True))
    assert uri == local and len(uri) == 15
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        R.ShardStream(f"file://{tmp_path}/nothing")


def test_units_decode_and_empty_split_error(tmp_path):
    make_data(tmp_path, {"a": 1})
    rec = next(iter(R.ShardStream(tmp_path, loop=False)))
    assert rec["user_units"].dtype == np.int64 and len(rec["user_units"]) == 25
    with pytest.raises(ValueError, match="heldout"):
        R.ShardStream(tmp_path, split="heldout")
