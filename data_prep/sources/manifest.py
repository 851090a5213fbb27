"""``manifest`` corpora: JSONL, one ``{"audio": path, "text": str, "speaker"?: str, "emotion"?: str}``
per line (NeMo/Lhotse-like); ``path`` is relative to the manifest's folder and must stay inside it.
Each line becomes a one-turn utterance record (see :mod:`data_prep.sources`)."""
from __future__ import annotations

import json
from pathlib import Path

from data_prep.sources.files import (
    decode_utf8,
    inside,
    load_mono_16k,
    make_key,
    utterance_record,
)
from data_prep.validate import Reject, check_label, check_text
from omni.config import EMOTIONS, DataConfig, SourceConfig


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
