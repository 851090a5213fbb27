"""Hostile inputs through data prep: the generated corpus (``data_prep.hostile``) mixed with good rows
goes through the real pipeline (``data_prep.pipeline.run``, in-process engine). Every bad row gets its
documented reject code, every good row lands in a shard, no exception escapes, nothing outside the
source folders is opened or listed, and nothing outside the output folder is written.
(Malformed WebSocket traffic against Serve: ``tests/test_reliability_serve.py``.)"""
from __future__ import annotations

import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest
import soundfile as sf

from data_prep import pipeline as P
from data_prep import sources as SRC
from data_prep.hostile import make_hostile_corpus
from data_prep.validate import Reject
from omni.config import DataConfig, SourceConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
_AUDIT: list | None = None                  # events recorded while a test sets it to a list
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WATCHED = {"open", "os.listdir", "os.scandir", "os.rename", "os.replace", "os.remove", "os.unlink", "os.mkdir",
            "os.rmdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "os.utime", "shutil.rmtree"}


def _hook(event, args):
    if _AUDIT is None or event not in _WATCHED:
        return
    _AUDIT.append((event, args))


sys.addaudithook(_hook)        # cannot be removed; idle (one `is None` test) outside these tests


def _paths(event, args) -> list[tuple[str, bool]]:
    """(absolute path, is_write) for one audit event."""
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        write = bool(mode and any(c in str(mode) for c in "wax+")) or bool(isinstance(flags, int) and flags & _WRITE_FLAGS
                                                                           and mode is None)
        cand, w = [path], write
    elif event in ("os.listdir", "os.scandir"):
        cand, w = [args[0]], False
    elif event in ("os.rename", "os.replace", "os.link", "os.symlink"):
        cand, w = [args[0], args[1]], True
    else:
        cand, w = [args[0]], True
    out = []
    for p in cand:
        if isinstance(p, int) or p is None:
            continue                                       # an fd: its open was seen already
        p = os.fsdecode(p)
        out.append((os.path.abspath(p), w))
    return out


def _under(path: str, folder: Path) -> bool:
    folder = str(folder)
    return path == folder or path.startswith(folder + os.sep)


def _snapshot(base: Path, skip: Path) -> dict:
    snap = {}
    for dirpath, dirs, files in os.walk(base):
        if _under(dirpath, skip):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            if not _under(path, skip):
                st = os.lstat(path)
                snap[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return snap


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    spec = make_hostile_corpus(base)
    return base, spec


def _cfg(spec, out: Path):
    cfg = load_config(ROOT / "configs/tiny.yaml", [
        f"data.output_dir={out}", "data.shard_max_samples=4", "data.heldout_fraction=0.25", "data.max_duration_s=5",
        "tokenizer.num_units=16", "tokenizer.text_vocab_size=300"])
    cfg.data.sources = [SourceConfig(**s) for s in spec["sources"]]
    return cfg


def test_generator_covers_every_kind(hostile):
    base, spec = hostile
    codes = set(spec["expected"].values())
    assert codes >= {"truncated", "empty_file", "not_audio", "duration", "too_large", "nan_inf", "bad_format",
                     "zero_length", "unreadable", "path_outside_root", "bad_encoding", "bad_row", "bad_record"}
    huge = base / "corpus/manifest/audio/huge.wav"
    st = huge.stat()
    assert st.st_size > DataConfig().max_file_mb * 2 ** 20           # over the default limit ...
    assert st.st_blocks * 512 < 2 ** 20                               # ... and sparse: no disk used
    assert len(spec["good"]) == 6 + 2 + 1 + 1


def test_readers_reject_each_row_with_its_code(hostile, monkeypatch):
    """Reader level, row by row: the exact code, no exception other than Reject, and the files
    that must not be decoded (over the size limit, not regular, outside the root) never reach libsndfile."""
    base, spec = hostile
    decoded = []
    real = sf.SoundFile

    class Recorder(real):
        def __init__(self, file, *a, **k):
            name = getattr(file, "name", file)
            decoded.append(os.readlink(f"/proc/self/fd/{name}") if isinstance(name, int) else os.path.realpath(name))
            super().__init__(file, *a, **k)

    monkeypatch.setattr(sf, "SoundFile", Recorder)
    cfg = DataConfig(max_duration_s=5.0)
    got, slow = {}, []
    for s in spec["sources"]:
        for it in SRC.list_items(SourceConfig(**s)):
            t0 = time.perf_counter()
            try:
                SRC.load_record(json.loads(json.dumps(it)), cfg)
                got[it["key"]] = None
            except Reject as e:
                got[it["key"]] = e.code
            if time.perf_counter() - t0 > 2.0:
                slow.append(it["key"])
    assert {k: v for k, v in got.items() if v} == spec["expected"]
    assert sorted(k for k, v in got.items() if v is None) == spec["good"]
    assert slow == []                                   # the bomb and the 3 GiB file cost nothing
    audio = base / "corpus/manifest/audio"
    for name in ("huge.wav", "fifo.wav", "folder.wav"):
        assert str(audio / name) not in decoded
    assert not any(_under(p, base / "outside") for p in decoded)


def test_pipeline_run_keeps_good_rows_and_touches_nothing_outside(hostile, tmp_path):
    """The real ingestion (plan → read/validate → tokenizers → shards → manifest/rejects) on the
    hostile corpus, under an audit hook that records every open, listing and write of the process."""
    global _AUDIT
    base, spec = hostile
    out = base / "out"                          # next to the corpus: a write beside it would show
    cfg = _cfg(spec, out)
    before = _snapshot(base, out)
    _AUDIT = []
    try:
        manifest = P.run(cfg, engine="local", progress=False)       # no exception escapes
    finally:
        events, _AUDIT = _AUDIT, None
    # each bad row: its documented code, with its input; each good row: in exactly one shard
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["key"]: r["reason"].split(":")[0] for r in rejects} == spec["expected"]
    assert all(r["input"] for r in rejects)
    keys = []
    for tar in sorted((out / "shards").rglob("*.tar")):
        with tarfile.open(tar) as t:
            keys += sorted({m.name.split(".")[0] for m in t.getmembers()})
    assert sorted(keys) == spec["good"]
    src = manifest["sources"]
    assert sum(s["accepted"] for s in src.values()) == len(spec["good"])
    assert sum(s["rejected"] for s in src.values()) == len(spec["expected"])
    # nothing outside the source folders opened or listed (the escaping rows all point at outside/)
    touched = [(e, p) for e, a in events for p, _ in _paths(e, a)]
    assert touched, "the audit hook saw nothing: it is not wired"
    leaks = [(e, p) for e, p in touched if _under(p, base / "outside") or _under(os.path.realpath(p), base / "outside")]
    assert leaks == []
    # nothing written anywhere but the output folder (and no file under the corpus changed)
    writes = sorted({p for e, a in events for p, w in _paths(e, a) if w})
    caches = [p for p in writes if "__pycache__" in Path(p).parts]           # imports compiling bytecode
    assert writes and [p for p in writes if not _under(p, out) and p not in caches] == []
    assert _snapshot(base, out) == before
