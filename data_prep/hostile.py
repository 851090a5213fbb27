"""A generated corpus of hostile inputs, mixed with good ones, in every source layout.

    python -m data_prep.hostile OUT_DIR        # writes OUT_DIR/{corpus,outside}, prints the sources

Point ``jobs.prepare_data`` at ``OUT_DIR/corpus/*`` (see the printed ``data.sources``) to drill an
installation: every bad row must land in ``rejects.jsonl`` with the code in
``OUT_DIR/expected.json``, every good row in a shard, nothing under ``OUT_DIR/outside`` may be
opened (the traversal and symlink rows point there; its files are *valid* audio, so a reader that
followed them would accept them and the drill would see it), and the run must not crash.
``docs/reliability.md`` has the table; ``tests/test_hostile_inputs.py`` runs it.

What is in it (manifest ``hm``, LibriSpeech ``hl``, DailyTalk ``hd``, stereo dialogues ``hs``):
truncated WAV/FLAC, WAV whose RIFF/data sizes lie, 0-byte file, random bytes named .wav/.flac,
a FLAC whose STREAMINFO claims 2^36 samples (zip-bomb-like), a sparse multi-GiB WAV over
``data.max_file_mb``, NaN/inf float WAVs, 1 Hz / 1 MHz sample rates, 64 channels, 0 channels, a
FIFO, a folder, a symlink loop, non-UTF-8 transcripts (manifest line, .trans.txt line, .txt, JSON
timings), ``../`` traversal, absolute paths, a NUL byte, symlinks (file and folder) escaping the
root, nesting too deep to parse; plus good rows: non-ASCII UTF-8 text, 8 kHz, stereo, FLAC,
``sub/../`` paths that stay inside.
"""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.sources.fixtures import sentence, tone

SOURCES = {"manifest": "hm", "librispeech": "hl", "dailytalk": "hd", "stereo_dialogue": "hs"}
HUGE_BYTES = 3 * 2 ** 30          # sparse: a few KiB on disk, over the default data.max_file_mb (256)


def _key(source: str, ident: str) -> str:
    from data_prep.sources import make_key
    return make_key(source, ident)


def _wav_bytes(wave: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytearray:
    import io
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype=subtype)
    return bytearray(buf.getvalue())


def _flac_total_samples(data: bytearray, total: int) -> bytearray:
    """Patch the 36-bit total-samples field of FLAC STREAMINFO (the first metadata block)."""
    assert data[:4] == b"fLaC"
    off = 8 + 10                   # "fLaC" + block header (4) + 10 bytes into STREAMINFO
    v = int.from_bytes(data[off:off + 8], "big")
    v = (v & ~((1 << 36) - 1)) | (total & ((1 << 36) - 1))
    data[off:off + 8] = v.to_bytes(8, "big")
    return data


def _write_outside(outside: Path) -> dict[str, Path]:
    """Valid files outside every source root: targets of the escaping rows."""
    (outside / "dialogue").mkdir(parents=True, exist_ok=True)
    files = {"wav": outside / "secret.wav", "flac": outside / "secret.flac", "txt": outside / "secret.txt",
             "trans": outside / "secret.trans.txt", "json": outside / "secret.json"}
    sf.write(files["wav"], tone(1.0, 900), 16000)
    sf.write(files["flac"], tone(1.0, 901), 16000)
    files["txt"].write_text("a perfectly good transcript\n")
    files["trans"].write_text("101-10-0000 A PERFECTLY GOOD TRANSCRIPT\n")
    files["json"].write_text(json.dumps({"turns": [{"speaker": "user", "start_s": 0.0, "end_s": 0.5, "text": "hi"},
                                                   {"speaker": "assistant", "start_s": 0.6, "end_s": 1.0,
                                                    "text": "hello"}]}))
    sf.write(outside / "dialogue" / "0_0_d3.wav", tone(1.0, 902), 16000)
    (outside / "dialogue" / "0_0_d3.txt").write_text("hello\n")
    sf.write(outside / "dialogue" / "1_1_d3.wav", tone(1.0, 903), 16000)
    (outside / "dialogue" / "1_1_d3.txt").write_text("hi there\n")
    return files


def _manifest(root: Path, outside: dict[str, Path], huge_bytes: int) -> tuple[dict, list]:
    name = SOURCES["manifest"]
    audio = root / "audio"
    (audio / "sub").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    good = tone(1.0, 1, sr_hz=16000)
    rows: list[tuple[bytes, str | None]] = []          # (raw manifest line, expected code or None = good)

    def row(obj, code=None):
        rows.append((json.dumps(obj).encode() if not isinstance(obj, bytes) else obj, code))

    # ---- good rows
    sf.write(audio / "good_0.wav", good, 16000)
    sf.write(audio / "good_1.wav", tone(1.2, 2), 22050)
    sf.write(audio / "good.flac", tone(1.0, 3, sr_hz=16000), 16000)
    sf.write(audio / "good_8k.wav", tone(1.0, 4, sr_hz=8000), 8000)
    sf.write(audio / "good_stereo.wav", tone(1.0, 5, sr_hz=16000, channels=2), 16000)
    row({"audio": "audio/good_0.wav", "text": sentence(1)})
    row({"audio": "audio/good_1.wav", "text": "café, déjà vu — 東京で会いましょう", "emotion": "happy"})
    row({"audio": "audio/good.flac", "text": sentence(3)})
    row({"audio": "audio/good_8k.wav", "text": sentence(4)})
    row({"audio": "audio/good_stereo.wav", "text": sentence(5)})
    row({"audio": "audio/sub/../good_0.wav", "text": sentence(6)})          # '..' that stays inside

    # ---- corrupt audio
    full = bytes(_wav_bytes(tone(1.0, 10, sr_hz=16000), 16000))
    (audio / "truncated.wav").write_bytes(full[: len(full) // 2])
    row({"audio": "audio/truncated.wav", "text": "truncated"}, "truncated")
    lying = bytearray(full)
    lying[4:8] = b"\xff\xff\xff\xff"
    i = lying.find(b"data")
    lying[i + 4:i + 8] = b"\xff\xff\xff\xff"
    (audio / "lying_sizes.wav").write_bytes(lying)
    row({"audio": "audio/lying_sizes.wav", "text": "sizes lie"}, "truncated")
    (audio / "empty.wav").write_bytes(b"")
    row({"audio": "audio/empty.wav", "text": "zero bytes"}, "empty_file")
    (audio / "random.wav").write_bytes(rng.bytes(8000))
    row({"audio": "audio/random.wav", "text": "random bytes"}, "not_audio")
    (audio / "random.flac").write_bytes(rng.bytes(8000))
    row({"audio": "audio/random.flac", "text": "random bytes"}, "not_audio")
    (audio / "fake_magic.flac").write_bytes(b"fLaC" + rng.bytes(4000))
    row({"audio": "audio/fake_magic.flac", "text": "flac magic, garbage after"}, "unreadable")
    sf.write(audio / "bomb_src.flac", tone(1.0, 11, sr_hz=16000), 16000)
    bomb = _flac_total_samples(bytearray((audio / "bomb_src.flac").read_bytes()), 2 ** 36 - 1)
    (audio / "bomb_src.flac").unlink()
    (audio / "bomb.flac").write_bytes(bomb)
    row({"audio": "audio/bomb.flac", "text": "claims 68.7 billion samples"}, "duration")
    sf.write(audio / "t.flac", tone(3.0, 12, sr_hz=16000), 16000)
    flac_full = (audio / "t.flac").read_bytes()
    (audio / "t.flac").unlink()
    (audio / "truncated.flac").write_bytes(flac_full[: len(flac_full) * 2 // 3])
    row({"audio": "audio/truncated.flac", "text": "truncated flac"}, "truncated")
    with open(audio / "huge.wav", "wb") as f:            # sparse: a valid header, then a hole
        hdr = bytearray(full[:44])
        hdr[4:8] = struct.pack("<I", min(huge_bytes - 8, 0xFFFFFFFF))
        hdr[40:44] = struct.pack("<I", min(huge_bytes - 44, 0xFFFFFFFF))
        f.write(hdr)
        f.truncate(huge_bytes)
    row({"audio": "audio/huge.wav", "text": "sparse, bigger than data.max_file_mb"}, "too_large")
    nan = good.copy()
    nan[100:110] = np.nan
    sf.write(audio / "nan.wav", nan, 16000, subtype="FLOAT")
    row({"audio": "audio/nan.wav", "text": "nan"}, "nan_inf")
    inf = good.copy()
    inf[5] = np.inf
    sf.write(audio / "inf.wav", inf, 16000, subtype="FLOAT")
    row({"audio": "audio/inf.wav", "text": "inf"}, "nan_inf")
    for rate, fname in ((1, "rate_1hz.wav"), (1_000_000, "rate_1mhz.wav")):
        w = bytearray(full)
        w[24:28] = struct.pack("<I", rate)
        (audio / fname).write_bytes(w)
        row({"audio": f"audio/{fname}", "text": "odd rate"}, "bad_format")
    sf.write(audio / "channels_64.wav", np.tile(good[:, None] * 0.5, (1, 64)), 16000)
    row({"audio": "audio/channels_64.wav", "text": "64 channels"}, "bad_format")
    w = bytearray(full)
    w[22:24] = struct.pack("<H", 0)
    (audio / "channels_0.wav").write_bytes(w)
    row({"audio": "audio/channels_0.wav", "text": "0 channels"}, "unreadable")
    sf.write(audio / "no_samples.wav", np.zeros(0, np.float32), 16000)
    row({"audio": "audio/no_samples.wav", "text": "no samples"}, "zero_length")

    # ---- not regular files
    if hasattr(os, "mkfifo"):
        os.mkfifo(audio / "fifo.wav")
        row({"audio": "audio/fifo.wav", "text": "a fifo would block a naive reader"}, "unreadable")
    (audio / "folder.wav").mkdir()
    row({"audio": "audio/folder.wav", "text": "a folder"}, "unreadable")
    row({"audio": "audio/missing.wav", "text": "missing"}, "unreadable")
    os.symlink("loop_b.wav", audio / "loop_a.wav")
    os.symlink("loop_a.wav", audio / "loop_b.wav")
    row({"audio": "audio/loop_a.wav", "text": "symlink loop"}, "unreadable")
    row({"audio": "audio/" + "x" * 5000 + ".wav", "text": "name too long"}, "unreadable")

    # ---- escaping the root
    rel_out = os.path.relpath(outside["wav"], root)
    row({"audio": rel_out, "text": "dot-dot traversal"}, "path_outside_root")
    row({"audio": "audio/../../" + rel_out, "text": "deeper traversal"}, "path_outside_root")
    row({"audio": str(outside["wav"]), "text": "absolute path"}, "path_outside_root")
    row({"audio": "/etc/passwd", "text": "system file"}, "path_outside_root")
    os.symlink(outside["wav"], audio / "link_out.wav")
    row({"audio": "audio/link_out.wav", "text": "symlink to outside"}, "path_outside_root")
    os.symlink(outside["wav"].parent, audio / "dir_link")
    row({"audio": "audio/dir_link/secret.wav", "text": "symlinked folder"}, "path_outside_root")
    row({"audio": "audio/good_0.wav\x00../../etc/passwd", "text": "NUL byte"}, "bad_row")

    # ---- bad rows / transcripts
    row(b'{"audio": "audio/good_0.wav", "text": "caf\xe9 latin-1"}', "bad_encoding")
    row(b'{"audio": "audio/good_0.wav", "text": "\xff\xfe\x00h\x00i"}', "bad_encoding")
    row(b"[" * 100_000, "bad_row")
    row(b"{not json", "bad_row")
    row(b"\x00\x01\x02 binary junk \x7f", "bad_row")
    row({"audio": 42, "text": "audio is a number"}, "bad_row")
    row({"audio": "audio/good_0.wav", "text": ["a", "list"]}, "missing_transcript")
    row({"audio": "audio/good_0.wav", "text": "x", "emotion": "\u202egnol"}, "unknown_emotion")

    (root / "manifest.jsonl").write_bytes(b"".join(line + b"\n" for line, _ in rows))
    expected = {_key(name, f"{n:07d}"): code for n, (_, code) in enumerate(rows, 1) if code}
    good_keys = [_key(name, f"{n:07d}") for n, (_, code) in enumerate(rows, 1) if not code]
    return expected, good_keys


def _librispeech(root: Path, outside: dict[str, Path]) -> tuple[dict, list]:
    name = SOURCES["librispeech"]
    d = root / "100" / "10"
    d.mkdir(parents=True, exist_ok=True)
    for u in range(4):
        if u == 3:
            os.symlink(outside["flac"], d / "100-10-0003.flac")
        else:
            sf.write(d / f"100-10-{u:04d}.flac", tone(1.0, 20 + u, sr_hz=16000), 16000)
    (d / "100-10.trans.txt").write_bytes(b"100-10-0000 HELLO THERE\n100-10-0001 HOW ARE YOU\n"
                                         b"100-10-0002 CAF\xc9 IN LATIN ONE\n100-10-0003 A LINK OUT\n")
    d2 = root / "101" / "10"
    d2.mkdir(parents=True, exist_ok=True)
    sf.write(d2 / "101-10-0000.flac", tone(1.0, 30, sr_hz=16000), 16000)
    os.symlink(outside["trans"], d2 / "101-10.trans.txt")
    expected = {_key(name, "100-10-0002"): "bad_encoding", _key(name, "100-10-0003"): "path_outside_root",
                _key(name, "101/10/101-10.trans.txt"): "path_outside_root",
                _key(name, "101-10-0000"): "missing_transcript"}      # its transcript file was refused
    return expected, [_key(name, "100-10-0000"), _key(name, "100-10-0001")]


def _dailytalk(root: Path, outside: dict[str, Path]) -> tuple[dict, list]:
    name = SOURCES["dailytalk"]
    for dlg in range(3):
        folder = root / "data" / str(dlg)
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(2):
            sf.write(folder / f"{t}_{t % 2}_d{dlg}.wav", tone(0.8, 40 + 10 * dlg + t), 22050)
            (folder / f"{t}_{t % 2}_d{dlg}.txt").write_text(sentence(40 + t) + "\n")
    (root / "data" / "1" / "1_1_d1.txt").write_bytes(b"na\xefve latin-1 text\n")
    (root / "data" / "2" / "1_1_d2.txt").unlink()
    os.symlink(outside["txt"], root / "data" / "2" / "1_1_d2.txt")
    os.symlink(outside["wav"].parent / "dialogue", root / "data" / "3")
    (root / "metadata.json").write_text(json.dumps({str(d): {"0": {"emotion": "none"}, "1": {"emotion": "happiness"}}
                                                    for d in range(4)}))
    expected = {_key(name, "d1"): "bad_encoding", _key(name, "d2"): "path_outside_root",
                _key(name, "d3"): "path_outside_root"}
    return expected, [_key(name, "d0")]


def _stereo(root: Path, outside: dict[str, Path]) -> tuple[dict, list]:
    name = SOURCES["stereo_dialogue"]
    root.mkdir(parents=True, exist_ok=True)
    sr = 16000
    x = np.zeros((2 * sr, 2), np.float32)
    x[: sr - 1600, 0] = tone(0.9, 50, sr_hz=sr)
    x[sr:, 1] = tone(1.0, 51, sr_hz=sr)
    timings = {"turns": [{"speaker": "user", "start_s": 0.0, "end_s": 0.9, "text": sentence(50)},
                         {"speaker": "assistant", "start_s": 1.0, "end_s": 2.0, "text": sentence(51)}]}
    for stem in ("good", "link", "latin1", "notjson", "badturn"):
        sf.write(root / f"{stem}.wav", x, sr)
    (root / "good.json").write_text(json.dumps(timings))
    os.symlink(outside["json"], root / "link.json")
    (root / "latin1.json").write_bytes(json.dumps(timings).replace("user", "us\u00e9r").encode("latin-1"))
    (root / "notjson.json").write_text("{turns: oops")
    (root / "badturn.json").write_text(json.dumps({"turns": [{"speaker": "user", "text": "no times"}]}))
    expected = {_key(name, "link"): "path_outside_root", _key(name, "latin1"): "bad_encoding",
                _key(name, "notjson"): "bad_record", _key(name, "badturn"): "bad_record"}
    return expected, [_key(name, "good")]


def make_hostile_corpus(out: Path, huge_bytes: int = HUGE_BYTES) -> dict:
    """Write ``out/corpus/<layout>/`` and ``out/outside/``; returns (and writes ``out/expected.json``)
    ``{"sources": [{kind, name, path}], "expected": {key: code}, "good": [key], "outside": str}``."""
    out = Path(out)
    outside = _write_outside(out / "outside")
    corpus = out / "corpus"
    expected, good, sources = {}, [], []
    for kind, (folder, make) in {"manifest": ("manifest", _manifest), "librispeech": ("librispeech", _librispeech),
                                 "dailytalk": ("dailytalk", _dailytalk),
                                 "stereo_dialogue": ("stereo", _stereo)}.items():
        root = corpus / folder
        root.mkdir(parents=True, exist_ok=True)
        e, g = make(root, outside, huge_bytes) if kind == "manifest" else make(root, outside)
        expected.update(e)
        good += g
        sources.append({"kind": kind, "name": SOURCES[kind],
                        "path": str(root / "manifest.jsonl") if kind == "manifest" else str(root)})
    spec = {"sources": sources, "expected": expected, "good": sorted(good), "outside": str(out / "outside")}
    (out / "expected.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
    return spec


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__)
        sys.exit(2)
    spec = make_hostile_corpus(Path(sys.argv[1]))
    print(f"{len(spec['expected'])} hostile rows, {len(spec['good'])} good rows; data.sources:")
    print(json.dumps(spec["sources"], indent=1))
