"""``dailytalk`` corpora (the DailyTalk release): ``<root>/data/<dialogue>/<turn>_<speaker>_d<dialogue>.wav``
+ ``.txt`` (one line), optional ``<root>/metadata.json`` ``{"<dialogue>": {"<turn>": {"emotion":
"happiness", ...}}}`` with DailyDialog labels (``none|no emotion|happiness|sadness|anger|fear|
surprise|disgust``). Speaker 0 → user, 1 → assistant; turns are laid end to end with
``DAILYTALK_GAP_S`` of silence between them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from data_prep.sources.files import (
    SAMPLE_RATE_HZ,
    inside,
    load_mono_16k,
    make_key,
    read_text_file,
)
from data_prep.validate import Reject, check_label, check_text
from omni.config import EMOTIONS, DataConfig, SourceConfig

DAILYTALK_GAP_S = 0.2
DAILYDIALOG_EMOTIONS = {"none": "neutral", "no emotion": "neutral", "neutral": "neutral", "happiness": "happy",
                        "sadness": "sad", "anger": "angry", "fear": "fearful", "surprise": "surprised",
                        "disgust": "disgusted"}


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
                             f"(DailyTalk layout, see data_prep/sources/dailytalk.py)")
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
