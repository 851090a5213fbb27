"""``POST /v1/respond`` for an OmniChat export: text + style tags + the reply voiced in that style.

When the served model is an OmniChat export (``omnichat.json`` beside ``export.json``, written by
``omni.omnichat.model.save_omnichat``), :class:`serve_app.app.DuplexServer` answers ``/v1/respond``
through :class:`OmniChatRoute` instead of the duplex engine: the user's utterance goes through the
frozen experts and the Mix-Former into the LLM, which answers with text and the tags
``<pitch_*> <speed_*> <emotion_*>``; the TTS voices the text in that style. A duplex WebSocket is
refused on such a replica (OmniChat is half duplex).

The TTS is injected (``serve_app`` does not import ``data_prep``): the app argument ``tts`` is an
import path ``module:factory``; the factory is called with no arguments and returns an object with
``synthesize(text, voice=, emotion=, pitch=, speed=)`` (``.wave``: float32 at 16 kHz).
``jobs.serve`` and ``serve_app/serve_config.yaml`` pass ``data_prep.synth.tts:get_tts`` (espeak-ng).
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

from omni.config import ConfigError
from omni.omnichat.respond import Responder
from serve_app import protocol as P


def is_omnichat_export(export_dir) -> bool:
    return (Path(export_dir) / "omnichat.json").is_file()


def load_tts(spec: str | None):
    """``module:factory`` -> the TTS the factory returns; None -> error (an OmniChat reply is voiced)."""
    if not spec:
        raise ConfigError("serving an OmniChat export needs a TTS to voice its replies: pass the app argument "
                          "tts=MODULE:FACTORY (e.g. tts=data_prep.synth.tts:get_tts)")
    mod, _, attr = str(spec).partition(":")
    if not mod or not attr:
        raise ConfigError(f"tts={spec!r} must be an import path MODULE:FACTORY (e.g. data_prep.synth.tts:get_tts)")
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"tts={spec!r} cannot be imported: {e}") from None
    tts = factory()
    if not callable(getattr(tts, "synthesize", None)):
        raise ConfigError(f"tts={spec!r} returned {type(tts).__name__}, which has no synthesize(text, ...) method")
    return tts


class OmniChatRoute:
    """One OmniChat model per replica; :meth:`respond` is the body of ``POST /v1/respond``."""

    def __init__(self, export_dir, tts_spec: str | None):
        self.export_dir = Path(export_dir)
        self.responder = Responder(self.export_dir, tts=load_tts(tts_spec))
        self.tts_spec = tts_spec

    def health(self) -> dict:
        oc = self.responder.model.oc
        return {"family": "omnichat", "model": str(self.export_dir), "experts": list(oc.experts),
                "fusion": oc.fusion, "tts": self.tts_spec, "duplex": False}

    def respond(self, wave) -> dict:
        t0 = time.perf_counter()
        out = self.responder.respond(wave)
        audio = out["audio"]
        return {"text": out["text"], "style": out["style"], "style_generated": out["style_complete"],
                "sample_rate_hz": out["sample_rate_hz"], "duration_s": round(audio.size / out["sample_rate_hz"], 3),
                "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
                "audio_wav_base64": P.wav_base64(audio, out["sample_rate_hz"])}
