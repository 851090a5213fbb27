"""``librispeech`` corpora: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with lines
``<utt-id> <TEXT>`` and ``<utt-id>.flac`` beside it. A flac with no transcript line is a row too
(rejected ``missing_transcript``). Each utterance becomes a one-turn record."""
from __future__ import annotations

from pathlib import Path

from data_prep.sources.files import (
    decode_utf8,
    inside,
    load_mono_16k,
    make_key,
    open_regular,
    utterance_record,
)
from data_prep.validate import MAX_TEXT_BYTES, Reject, check_text
from omni.config import DataConfig, SourceConfig


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
                with open_regular(inside(self.root, rel), rel, MAX_TEXT_BYTES) as f:
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
