"""Corpus readers: one small class per ``data.sources[*].kind`` (``synthetic`` lives in the pipeline).

Each reader has ``list_items() -> list[item]`` (cheap: file listing and text only, run on the
driver) and ``load(item, data_cfg) -> record`` (decode, check, resample to 16 kHz mono, build
the dialogue record of docs/architecture.md; run inside Ray Data tasks). An item is a small
JSON-able dict ``{"source", "kind", "key", "input", ...}``; ``input`` is what
``rejects.jsonl`` shows. A bad row raises :class:`data_prep.validate.Reject` in ``load``.

How single utterances become records (``manifest``, ``librispeech``): one record per
utterance with **one assistant turn** over the whole recording (``meta.task = "utterance"``);
the audio is on the assistant channel and the user channel is silence of the same length.
The align stage then gets both an ASR and a TTS example from it; dialogue stages see a
record whose only round has an empty user section (filter on ``meta.task`` to exclude).

Layouts:

* ``manifest``: JSONL, one ``{"audio": path, "text": str, "speaker"?: str, "emotion"?: str}``
  per line; ``path`` relative to the manifest's folder and must stay inside it.
* ``librispeech``: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with lines
  ``<utt-id> <TEXT>`` and ``<utt-id>.flac`` beside it. A flac with no transcript line is a
  row too (rejected ``missing_transcript``).
* ``dailytalk`` (DailyTalk release): ``<root>/data/<dialogue>/<turn>_<speaker>_d<dialogue>.wav``
  + ``.txt`` (one line), optional ``<root>/metadata.json``
  ``{"<dialogue>": {"<turn>": {"emotion": "happiness", ...}}}`` with DailyDialog labels
  (``none|no emotion|happiness|sadness|anger|fear|surprise|disgust``). Speaker 0 → user,
  1 → assistant; turns are laid end to end with ``DAILYTALK_GAP_S`` of silence between them.
* ``stereo_dialogue``: ``<root>/**/*.wav``, two channels (0 = user, 1 = assistant); an
  optional ``<name>.json`` beside it: ``{"turns": [{"speaker", "start_s", "end_s", "text",
  "emotion"?}]}``. Without it turns come from an energy detector per channel, with empty
  text and ``meta.transcribed = false`` (usable by the speech-only ``full_duplex_2`` stage).
"""
from __future__ import annotations

import hashlib
import json
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
    check_label,
    check_text,
    check_wave,
)
from omni.config import EMOTIONS, DataConfig, SourceConfig

SAMPLE_RATE_HZ = 16000
DAILYTALK_GAP_S = 0.2
DAILYDIALOG_EMOTIONS = {"none": "neutral", "no emotion": "neutral", "neutral": "neutral", "happiness": "happy",
                        "sadness": "sad", "anger": "angry", "fear": "fearful", "surprise": "surprised",
                        "disgust": "disgusted"}
_KEY_OK = re.compile(r"[^A-Za-z0-9_-]")


def make_key(source: str, ident: str) -> str:
    """WebDataset-safe key ``<source>-<ident>``; a short hash keeps sanitised ids unique."""
    raw = f"{source}-{ident}"
    key = _KEY_OK.sub("_", raw)
    return key if key == raw else f"{key}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- files
def _open_regular(path: Path, what: str, max_bytes: int):
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
    with _open_regular(path, what, max_bytes) as f:
        raw = f.read(max_bytes + 1)
    return decode_utf8(raw, what)


def decode_utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject("bad_encoding", f"{what} is not UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r}); "
                                     "re-encode it as UTF-8") from None


# ----------------------------------------------------------------------------- audio
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
    with _open_regular(path, what, int(cfg.max_file_mb * 2 ** 20)) as f:
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


# --------------------------------------------------------------------------- readers
class ManifestSource:
    kind = "manifest"

    def __init__(self, cfg: SourceConfig):
        self.cfg, self.path = cfg, Path(cfg.path)

    def list_items(self) -> list[dict]:
        items = []
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                line = raw.decode("utf-8", errors="replace")
                if not line.strip():
                    continue
                item = {"source": self.cfg.name, "kind": self.kind, "key": make_key(self.cfg.name, f"{n:07d}"),
                        "manifest": str(self.path.resolve()), "input": {"line": n, "row": line.rstrip("\r\n")}}
                try:
                    decode_utf8(raw, f"line {n}")
                except Reject as e:
                    item["reject"] = [e.code, e.detail]
                items.append(item)
        return items

    @staticmethod
    def load(item: dict, cfg: DataConfig) -> dict:
        try:
            row = json.loads(item["input"]["row"])
        except (json.JSONDecodeError, RecursionError) as e:
            raise Reject("bad_row", f"line {item['input']['line']} is not JSON ({str(e)[:120]})") from None
        if not isinstance(row, dict) or not isinstance(row.get("audio"), str) or not row["audio"]:
            raise Reject("bad_row", f"line {item['input']['line']}: expected an object with an \"audio\" path")
        text = check_text(row.get("text"))
        emotion = row.get("emotion") or "neutral"
        check_label("emotion", emotion, EMOTIONS)
        path = inside(Path(item["manifest"]).parent, row["audio"])
        wave = load_mono_16k(path, cfg, row["audio"])
        return utterance_record(item["key"], item["source"], wave, text, row.get("speaker"), emotion,
                                {"audio_path": row["audio"]})


class LibriSpeechSource:
    kind = "librispeech"

    def __init__(self, cfg: SourceConfig):
        self.cfg, self.root = cfg, Path(cfg.path)

    def list_items(self) -> list[dict]:
        texts: dict[str, tuple[str, str]] = {}
        bad_lines: dict[str, list[str]] = {}
        broken: list[dict] = []                     # transcript files that cannot be read at all
        for tf in sorted(self.root.rglob("*.trans.txt")):
            rel = str(tf.relative_to(self.root))
            try:
                with _open_regular(inside(self.root, rel), rel, MAX_TEXT_BYTES) as f:
                    data = f.read(MAX_TEXT_BYTES + 1)
            except Reject as e:
                broken.append({"source": self.cfg.name, "kind": self.kind, "key": make_key(self.cfg.name, rel),
                               "root": str(self.root.resolve()), "input": {"transcripts": rel},
                               "reject": [e.code, e.detail]})
                continue
            for n, raw in enumerate(data.splitlines(), 1):
                line = raw.decode("utf-8", errors="replace")
                if line.strip():
                    uid, _, text = line.strip().partition(" ")
                    texts[uid] = (str(tf.parent.relative_to(self.root)), text)
                    try:
                        decode_utf8(raw, f"{rel} line {n}")
                    except Reject as e:
                        bad_lines[uid] = [e.code, e.detail]
        audio = {p.stem: str(p.parent.relative_to(self.root)) for p in sorted(self.root.rglob("*.flac"))}
        items = []
        for uid in sorted(set(texts) | set(audio)):
            folder = audio.get(uid) or texts[uid][0]
            items.append({"source": self.cfg.name, "kind": self.kind, "key": make_key(self.cfg.name, uid),
                          "root": str(self.root.resolve()),
                          "input": {"id": uid, "audio": f"{folder}/{uid}.flac",
                                    "text": texts[uid][1] if uid in texts else None}})
            if uid in bad_lines:
                items[-1]["reject"] = bad_lines[uid]
        return items + broken

    @staticmethod
    def load(item: dict, cfg: DataConfig) -> dict:
        inp = item["input"]
        text = check_text(inp["text"], f"transcript line for {inp['id']} in its .trans.txt")
        wave = load_mono_16k(inside(Path(item["root"]), inp["audio"]), cfg, inp["audio"])
        return utterance_record(item["key"], item["source"], wave, text, inp["id"].split("-")[0], "neutral",
                                {"audio_path": inp["audio"]})


class DailyTalkSource:
    kind = "dailytalk"
    _name = re.compile(r"^(\d+)_(\d+)_d(\d+)$")

    def __init__(self, cfg: SourceConfig):
        self.cfg, self.root = cfg, Path(cfg.path)

    def list_items(self) -> list[dict]:
        data = self.root / "data" if (self.root / "data").is_dir() else self.root
        meta, meta_reject = {}, None
        if (self.root / "metadata.json").exists():
            try:
                meta = json.loads(read_text_file(inside(self.root, "metadata.json"), "metadata.json"))
                if not isinstance(meta, dict):
                    raise Reject("bad_record", "metadata.json: expected an object {dialogue: {turn: {...}}}")
            except ValueError as e:
                meta_reject = ["bad_record", f"metadata.json is not JSON ({str(e)[:120]})"]
            except Reject as e:
                meta_reject = [e.code, f"metadata.json: {e.detail}"]
        items = []
        dialogues = [p for p in data.iterdir() if p.is_dir() and p.name.isdigit()]  # data/<dialogue index>/
        if not dialogues:
            raise ValueError(f"source {self.cfg.name!r}: no dialogue folders <root>/data/<N>/ in {self.root} "
                             f"(DailyTalk layout, see data_prep/sources)")
        for d in sorted(dialogues, key=lambda p: int(p.name)):
            item = {"source": self.cfg.name, "kind": self.kind, "key": make_key(self.cfg.name, f"d{d.name}"),
                    "root": str(self.root.resolve()), "input": {"dialogue": d.name, "turns": []}}
            if not d.resolve().is_relative_to(self.root.resolve()):     # a symlinked folder: never listed
                where = f"dialogue folder {d.name} resolves to {d.resolve()}, outside {self.root.resolve()}"
                item["reject"] = ["path_outside_root", where]
                items.append(item)
                continue
            if meta_reject:
                item["reject"] = meta_reject
            turns = []
            for wav in sorted(d.glob("*.wav")):
                m = self._name.match(wav.stem)
                if not m:
                    continue
                t, spk = int(m.group(1)), int(m.group(2))
                d_meta = meta.get(d.name)
                t_meta = d_meta.get(str(t)) if isinstance(d_meta, dict) else None
                emo = t_meta.get("emotion", "none") if isinstance(t_meta, dict) else "none"
                turns.append({"turn": t, "speaker": spk, "emotion": emo,
                              "wav": str(wav.relative_to(self.root)),
                              "txt": str(wav.with_suffix(".txt").relative_to(self.root))})
            turns.sort(key=lambda t: t["turn"])
            item["input"]["turns"] = turns
            items.append(item)
        return items

    @staticmethod
    def load(item: dict, cfg: DataConfig) -> dict:
        root, inp = Path(item["root"]), item["input"]
        if not inp["turns"]:
            raise Reject("bad_record", f"dialogue {inp['dialogue']} has no <turn>_<speaker>_d<dialogue>.wav files")
        waves, turns, t0 = [], [], 0.0
        for t in inp["turns"]:
            txt = inside(root, t["txt"])
            text = check_text(read_text_file(txt, t["txt"]).strip() if txt.exists() else None,
                              f"transcript {t['txt']}")
            emotion = DAILYDIALOG_EMOTIONS.get(str(t["emotion"]).lower(), t["emotion"])
            check_label("emotion", emotion, EMOTIONS, f"{t['wav']}: ")
            w = load_mono_16k(inside(root, t["wav"]), cfg, t["wav"])
            dur = len(w) / SAMPLE_RATE_HZ
            turns.append({"speaker": "user" if t["speaker"] == 0 else "assistant", "text": text, "spoken_text": text,
                          "start_s": round(t0, 4), "end_s": round(t0 + dur, 4), "emotion": emotion,
                          "pitch": "normal", "speed": "normal", "kind": "turn", "interrupted": False,
                          "speaker_id": str(t["speaker"])})
            waves.append((t["speaker"], w))
            t0 += dur + DAILYTALK_GAP_S
        gap = int(DAILYTALK_GAP_S * SAMPLE_RATE_HZ)
        n = sum(len(w) for _, w in waves) + gap * (len(waves) - 1)
        user, asst = np.zeros(n, np.float32), np.zeros(n, np.float32)
        pos = 0
        for spk, w in waves:
            (user if spk == 0 else asst)[pos:pos + len(w)] = w
            pos += len(w) + gap
        meta = {"id": item["key"], "source": item["source"], "task": "dialogue", "scenario": "dailytalk",
                "sample_rate_hz": SAMPLE_RATE_HZ, "duration_s": round(n / SAMPLE_RATE_HZ, 4), "turns": turns,
                "events": [], "dialogue": inp["dialogue"]}
        return {"key": item["key"], "meta": meta, "user": user, "assistant": asst}


class StereoDialogueSource:
    kind = "stereo_dialogue"

    def __init__(self, cfg: SourceConfig):
        self.cfg, self.root = cfg, Path(cfg.path)

    def list_items(self) -> list[dict]:
        return [{"source": self.cfg.name, "kind": self.kind,
                 "key": make_key(self.cfg.name, str(p.relative_to(self.root).with_suffix("")).replace("/", "_")),
                 "root": str(self.root.resolve()),
                 "input": {"audio": str(p.relative_to(self.root)),
                           "timings": str(p.with_suffix(".json").relative_to(self.root))
                           if p.with_suffix(".json").exists() else None}}
                for p in sorted(self.root.rglob("*.wav"))]

    @staticmethod
    def load(item: dict, cfg: DataConfig) -> dict:
        root, inp = Path(item["root"]), item["input"]
        wave, sr = read_audio(inside(root, inp["audio"]), cfg, inp["audio"])
        if wave.shape[1] != 2:
            raise Reject("bad_record", f"{inp['audio']}: {wave.shape[1]} channel(s), expected 2 (user, assistant)")
        check_wave(wave, cfg, inp["audio"])
        check_duration(wave.shape[0] / sr, cfg, inp["audio"])
        wave = to_16k(wave, sr)
        user, asst = np.ascontiguousarray(wave[:, 0]), np.ascontiguousarray(wave[:, 1])
        dur = len(user) / SAMPLE_RATE_HZ
        if inp["timings"]:
            try:
                spec = json.loads(read_text_file(inside(root, inp["timings"]), inp["timings"]))
            except ValueError as e:
                raise Reject("bad_record", f"{inp['timings']} is not JSON ({str(e)[:120]})") from None
            if not isinstance(spec, dict) or not isinstance(spec.get("turns") or [], list):
                raise Reject("bad_record", f"{inp['timings']}: expected {{\"turns\": [...]}}")
            turns = []
            for i, t in enumerate(spec.get("turns") or []):
                if not isinstance(t, dict):
                    raise Reject("bad_record", f"{inp['timings']} turn {i} is not an object")
                text = check_text(t.get("text"), f"{inp['timings']} turn {i} text")
                emotion = t.get("emotion") or "neutral"
                check_label("emotion", emotion, EMOTIONS, f"{inp['timings']} turn {i}: ")
                try:
                    start_s, end_s = float(t["start_s"]), min(float(t["end_s"]), dur)
                except (KeyError, TypeError, ValueError):
                    raise Reject("bad_record", f"{inp['timings']} turn {i}: start_s/end_s must be numbers") from None
                turns.append({"speaker": t.get("speaker"), "text": text, "spoken_text": text,
                              "start_s": start_s, "end_s": end_s,
                              "emotion": emotion, "pitch": "normal", "speed": "normal", "kind": "turn",
                              "interrupted": bool(t.get("interrupted", False))})
            transcribed = True
        else:
            turns = [{"speaker": spk, "text": "", "spoken_text": "", "start_s": s, "end_s": e,
                      "emotion": "neutral", "pitch": "normal", "speed": "normal", "kind": "turn",
                      "interrupted": False}
                     for spk, ch in (("user", user), ("assistant", asst)) for s, e in speech_segments(ch)]
            transcribed = False
        turns.sort(key=lambda t: (t["start_s"], t["end_s"]))
        meta = {"id": item["key"], "source": item["source"], "task": "dialogue", "scenario": "stereo",
                "sample_rate_hz": SAMPLE_RATE_HZ, "duration_s": round(dur, 4), "turns": turns, "events": [],
                "transcribed": transcribed, "audio_path": inp["audio"]}
        return {"key": item["key"], "meta": meta, "user": user, "assistant": asst}


def speech_segments(wave: np.ndarray, frame_ms: float = 20.0, min_gap_s: float = 0.3,
                    min_len_s: float = 0.1) -> list[tuple[float, float]]:
    """Energy-based speech spans ``[(start_s, end_s)]``: frames above 10% of the peak RMS."""
    hop = int(SAMPLE_RATE_HZ * frame_ms / 1000)
    n = len(wave) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop) ** 2, axis=1))
    active = rms > max(1e-3, 0.1 * float(rms.max()))
    spans, start = [], None
    for i, a in enumerate(np.append(active, False)):
        if a and start is None:
            start = i
        elif not a and start is not None:
            if spans and (start - spans[-1][1]) * frame_ms / 1000 < min_gap_s:
                spans[-1][1] = i
            else:
                spans.append([start, i])
            start = None
    sec = frame_ms / 1000
    return [(round(s * sec, 4), round(e * sec, 4)) for s, e in spans if (e - s) * sec >= min_len_s]


READERS = {c.kind: c for c in (ManifestSource, LibriSpeechSource, DailyTalkSource, StereoDialogueSource)}


def reader_for(cfg: SourceConfig):
    if cfg.kind not in READERS:
        raise ValueError(f"source {cfg.name!r}: kind {cfg.kind!r} has no corpus reader (one of {sorted(READERS)})")
    if not cfg.path:
        raise ValueError(f"source {cfg.name!r} (kind {cfg.kind}) needs data.sources[].path")
    if not Path(cfg.path).exists():
        raise FileNotFoundError(f"source {cfg.name!r}: {cfg.path} does not exist (data.sources[].path)")
    return READERS[cfg.kind](cfg)


def list_items(cfg: SourceConfig) -> list[dict]:
    """All rows of one source, in a deterministic order."""
    return reader_for(cfg).list_items()


def load_record(item: dict, data_cfg: DataConfig) -> dict:
    """Item → 16 kHz dialogue record; raises :class:`Reject` for a bad row (also one that
    ``list_items`` already found bad: ``item["reject"] = [code, detail]``)."""
    if item.get("reject"):
        raise Reject(*item["reject"])
    return READERS[item["kind"]].load(item, data_cfg)
