"""Per-record model inference for evaluation: one held-out record in, plain JSON-able data out.

:class:`RecordEvaluator` runs an export on one dialogue record (docs/architecture.md) and
returns the raw material of every metric; :func:`summarize` (in ``omni.metrics.report``) turns
many such rows into the report. No Ray: ``jobs.evaluate`` wraps this class in a Ray Data actor
pool (``map_batches``), tests call it directly. Everything is greedy and seeded, so the same
export and records give the same rows.

A row::

    {"key", "losses": {stage: {stream: [sum_nats, tokens]}},
     "asr":  [{"ref", "hyp"}],                     the model's own ASR on user turns
     "tts":  [{"text", "hyp", "units"}],           TTS -> decode -> the model's own ASR
     "respond": [{"context", "ref", "hyp", "ref_style", "pred_style"}],   half duplex
     "duplex": {"user_turns", "assistant", "reference_assistant", "duration_s",
                "compute_s", "step_ms"} | None}     streaming engine in simulated real time
"""
from __future__ import annotations

import time

import numpy as np
import torch

from omni.config import STAGES, Config
from omni.metrics.duplex import (
    assistant_segments_from_meta,
    energy_segments,
    user_turns_from_meta,
)
from omni.model import greedy_decode

SAMPLE_RATE_HZ = 16000


greedy = greedy_decode  # the one implementation lives in omni.model


class RecordEvaluator:
    """Loads an export once; ``__call__(record, duplex=bool)`` gives one row (see module doc)."""

    def __init__(self, export_dir, cfg: Config):
        from omni.duplex import DuplexEngine
        from omni.model import load_export
        from omni.speech_tokenizer import load_speech_tokenizer

        torch.manual_seed(0)
        self.cfg = cfg
        self.exp = load_export(export_dir)
        self.model = self.exp.model.eval()
        self.speech = load_speech_tokenizer(self.exp.speech_tokenizer_dir)
        self.engine = DuplexEngine(self.exp, cfg.serve)
        v = self.vocab = self.exp.vocab
        self.text_mask = torch.zeros(v.size, dtype=torch.bool)
        self.text_mask[: v.text_size] = True
        self.text_mask[v.special("eot")] = True
        self.unit_mask = torch.zeros(v.size, dtype=torch.bool)
        self.unit_mask[v.unit_offset:] = True
        self.unit_mask[v.special("eot")] = True
        self.tts_asr, self.tts_asr_missing = self.transcribe, None
        if cfg.eval.tts_asr:
            try:
                from omni.asr import WhisperASR
                self.tts_asr = WhisperASR(None if cfg.eval.tts_asr == "whisper-base" else cfg.eval.tts_asr)
            except (ImportError, OSError, RuntimeError, ValueError) as e:  # FileNotFoundError is an OSError
                self.tts_asr_missing = f"eval.tts_asr={cfg.eval.tts_asr} cannot load: {str(e).splitlines()[0]}"

    # ------------------------------------------------------------------ pieces
    def _dialogue(self, rec: dict):
        from omni.formats import Dialogue
        return Dialogue.from_record(rec, frame_rate_hz=self.speech.frame_rate_hz, silence_unit=self.speech.silence_unit)

    def losses(self, rec: dict) -> dict:
        """Teacher-forced loss sums and token counts per stage and stream for this record."""
        from omni.packing import model_inputs
        from omni.train_loop import packed_batches, stage_examples, stream_losses

        out = {}
        for stage in STAGES:
            exs = stage_examples(self.cfg, stage, self.vocab, self.speech, iter([rec]))
            acc: dict[str, list] = {}
            with torch.no_grad():
                for b in packed_batches(exs, self.cfg.train.seq_len, self.cfg.train.micro_batch_size,
                                        self.vocab.special("pad")):
                    loss, per = stream_losses(self.model(**model_inputs(b)).logits, b["labels"], b["stream"])
                    n = int((b["labels"] != -100).sum())
                    tot = acc.setdefault("loss", [0.0, 0])
                    tot[0] += float(loss) * n
                    tot[1] += n
                    for k, (s, c) in per.items():
                        a = acc.setdefault(k, [0.0, 0])
                        a[0] += float(s)
                        a[1] += int(c)
            if acc:
                out[stage] = acc
        return out

    def transcribe_units(self, units) -> str:
        """The model's own ASR: ``<asr> S <text>`` -> greedy text until ``<eot>``."""
        v = self.vocab
        prompt = [v.special("asr"), *v.units_to_ids(np.asarray(units, np.int64)).tolist(), v.special("text")]
        hyp = greedy(self.model, prompt, self.text_mask, v.special("eot"), self.cfg.eval.max_new_tokens)
        return self.exp.text_tokenizer.decode(hyp)

    def transcribe(self, wave16k: np.ndarray) -> str:
        """ASR callable ``asr(wave16k) -> str`` (the hook of ``omni.metrics.text.tts_intelligibility``)."""
        units = np.asarray(self.speech.encode(np.asarray(wave16k, np.float32)), np.int64).reshape(-1)
        return self.transcribe_units(units) if units.size else ""

    def synthesize(self, text_ids, style: tuple[str, str, str], max_units: int) -> np.ndarray:
        """The model's own TTS: ``<tts> style T <speech>`` -> greedy units until ``<eot>``."""
        v = self.vocab
        emotion, pitch, speed = style
        prompt = [v.special("tts"), *v.style_ids(emotion=emotion, pitch=pitch, speed=speed),
                  *[int(t) for t in text_ids], v.special("speech")]
        ids = greedy(self.model, prompt, self.unit_mask, v.special("eot"), max_units)
        return np.asarray(ids, np.int64) - v.unit_offset

    def asr(self, rec: dict) -> list[dict]:
        from omni.formats import align_pairs

        tt = self.exp.text_tokenizer
        return [{"ref": tt.decode(p.text_ids.tolist()), "hyp": self.transcribe_units(p.units)}
                for p in align_pairs(self._dialogue(rec), asr_speakers=("user",), tts_speakers=())]

    def tts(self, rec: dict) -> list[dict]:
        from omni.formats import align_pairs

        if self.tts_asr_missing:
            return []
        out = []
        for p in align_pairs(self._dialogue(rec), asr_speakers=(), tts_speakers=("assistant",)):
            units = self.synthesize(p.text_ids, p.style, min(self.cfg.eval.tts_max_units, 2 * len(p.units) + 10))
            wave = np.asarray(self.speech.decode(units), np.float32).reshape(-1) if units.size else np.zeros(0)
            out.append({"text": self.exp.text_tokenizer.decode(p.text_ids.tolist()),
                        "hyp": self.tts_asr(wave) if wave.size else "", "units": int(units.size)})
        return out

    def respond(self, rec: dict) -> list[dict]:
        """Half duplex: each user turn followed by an assistant turn -> reply text + style vs reference."""
        turns = sorted(rec["meta"]["turns"], key=lambda t: t["start_s"])
        out, context = [], []
        for i, t in enumerate(turns):
            if t["speaker"] == "user" and t.get("kind", "turn") != "backchannel":
                nxt = next((u for u in turns[i + 1:] if u["speaker"] == "assistant"), None)
                s, e = int(t["start_s"] * SAMPLE_RATE_HZ), int(t["end_s"] * SAMPLE_RATE_HZ)
                wave = rec["user"][s:e]
                if nxt is not None and wave.size >= self.engine.samples_per_unit:
                    r = self.engine.respond(wave, max_assistant_text=self.cfg.eval.max_new_tokens,
                                            max_speech_s=0.04)
                    out.append({"context": "\n".join(context + [f"user: {t['text']}"]),
                                "ref": nxt.get("spoken_text") or nxt["text"], "hyp": r["text"],
                                "ref_style": {k: nxt.get(k, "") for k in ("emotion", "pitch", "speed")},
                                "pred_style": dict(r["style"])})
            context.append(f"{t['speaker']}: {t.get('spoken_text') or t['text']}")
        return out

    def duplex(self, rec: dict) -> dict:
        """Stream the user channel through the engine in chunk-sized frames, on a simulated clock.

        Output audio of chunk i plays from the moment its input chunk is complete (audio clock =
        samples fed / 16 kHz) for one chunk: the predicted assistant timeline is that stream's
        voiced parts (40 ms frames above -45 dBFS). Compute time is measured, not added, so the
        timeline (and its latencies) is deterministic; RTF and per-step milliseconds are reported."""
        user = np.asarray(rec["user"], np.float32)
        frame = self.engine.speech_chunk * self.engine.samples_per_unit
        out = np.zeros(len(user) + 2 * frame, np.float32)
        step_ms, compute_s = [], 0.0
        with self.engine.session() as s:
            for i in range(0, len(user), frame):
                t0 = time.perf_counter()
                events = s.feed(user[i:i + frame])
                compute_s += time.perf_counter() - t0
                clock = min(i + frame, len(user))
                for ev in events:
                    if ev["type"] == "audio" and ev["pcm"].size:
                        n = min(ev["pcm"].size, len(out) - clock)
                        out[clock:clock + n] += ev["pcm"][:n]
                        clock += n
                    elif ev["type"] == "stats":
                        step_ms.append(float(ev["step_ms"]))
        duration_s = len(user) / SAMPLE_RATE_HZ
        pred = [(a, min(b, duration_s)) for a, b in energy_segments(out, SAMPLE_RATE_HZ) if a < duration_s]
        return {"user_turns": user_turns_from_meta(rec["meta"]), "assistant": pred,
                "reference_assistant": assistant_segments_from_meta(rec["meta"]), "duration_s": duration_s,
                "compute_s": compute_s, "step_ms": step_ms}

    # ------------------------------------------------------------------ row
    def __call__(self, rec: dict, duplex: bool = False) -> dict:
        row = {"key": rec["key"], "losses": self.losses(rec), "asr": self.asr(rec), "tts": self.tts(rec),
               "respond": self.respond(rec), "duplex": self.duplex(rec) if duplex else None}
        if self.tts_asr_missing:
            row["tts_missing"] = self.tts_asr_missing
        return row
