"""``stereo_dialogue`` corpora: ``<root>/**/*.wav``, two channels (0 = user, 1 = assistant), and an
optional ``<name>.json`` beside each: ``{"turns": [{"speaker", "start_s", "end_s", "text",
"emotion"?}]}``. Without it, turns come from Silero VAD per channel (:func:`speech_segments`), with
empty text and ``meta.transcribed = false`` (usable by the speech-only ``full_duplex_2`` stage)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_prep.sources.files import (
    SAMPLE_RATE_HZ,
    inside,
    make_key,
    read_audio,
    read_text_file,
    to_16k,
)
from data_prep.validate import (
    Reject,
    check_duration,
    check_label,
    check_text,
    check_wave,
)
from omni import vad
from omni.config import EMOTIONS, DataConfig, SourceConfig

TURN_MIN_SILENCE_MS = 300
"""A pause this long or longer splits a channel's speech into two turns."""
TURN_MIN_SPEECH_MS = 100
"""Speech shorter than this is not a turn."""


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


def speech_segments(wave: np.ndarray) -> list[tuple[float, float]]:
    """Turns of one 16 kHz channel: Silero VAD (:func:`omni.vad.silero_segments`) with the benchmark's
    threshold (0.5), silences >= ``TURN_MIN_SILENCE_MS`` splitting turns and speech shorter than
    ``TURN_MIN_SPEECH_MS`` dropped. Noise, hum and tones are not turns (Silero hears speech only)."""
    segs = vad.silero_segments(wave, SAMPLE_RATE_HZ, min_silence_ms=TURN_MIN_SILENCE_MS,
                               min_speech_ms=TURN_MIN_SPEECH_MS)
    return [(round(s, 4), round(min(e, len(wave) / SAMPLE_RATE_HZ), 4)) for s, e in segs]
