"""Voice pools per TTS backend and speaker, with held-out voices left out (``synth.user_voices``,
``synth.assistant_voices``, ``synth.heldout_voices``), and the check of voice names against each
backend.

A voice name belongs to a backend: Piper's are the variants of :data:`piper_tts.VOICES` (``joe``,
``joe-low``, ...); espeak-ng's are ``LANGUAGE[+VARIANT]`` names that espeak-ng accepts, with a variant
file in its ``voices/!v`` folder (espeak-ng itself silently ignores an unknown variant, so it is
checked here); an OpenAI-compatible server's names cannot be checked offline and are taken as given.
"""
from __future__ import annotations

import functools
from pathlib import Path

from omni.config import SynthConfig

from . import tts as T

BACKENDS = ("espeak", "piper", "openai")


def default_pool(backend: str, speaker: str) -> tuple[str, ...]:
    """The backend's built-in pool for ``speaker`` (``user`` / ``assistant``)."""
    if backend == "piper":
        from . import piper_tts as P  # the module imports piper lazily: no model is loaded here
        return P.USER_VOICES if speaker == "user" else P.ASSISTANT_VOICES
    if backend == "openai":
        import os
        env = "OMNI_TTS_USER_VOICES" if speaker == "user" else "OMNI_TTS_ASSISTANT_VOICES"
        return tuple(os.environ.get(env, "alloy,echo,fable" if speaker == "user" else "nova,shimmer").split(","))
    return T.USER_VOICES if speaker == "user" else T.ASSISTANT_VOICES


@functools.lru_cache(maxsize=1)
def espeak_variants() -> frozenset[str]:
    import espeakng_loader
    return frozenset(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir())


@functools.lru_cache(maxsize=256)
def _espeak_base_ok(base: str) -> bool:
    try:
        T.get_tts("espeak").synthesize("a", base)
    except ValueError:
        return False
    return True


def backend_of(voice: str) -> str | None:
    """The backend a voice name belongs to (``espeak`` / ``piper``), or None when neither knows it."""
    from . import piper_tts as P
    if voice in P.VOICES:
        return "piper"
    base, _, variant = voice.partition("+")
    if base and (not variant or variant in espeak_variants()) and _espeak_base_ok(base):
        return "espeak"
    return None


def _variant_exists(entry: str) -> bool:
    return entry[1:] in espeak_variants()


def check_voices(cfg: SynthConfig) -> None:
    """Raise ValueError (one line) when a configured voice is not a voice of any backend in use, or a
    pool is left empty once the held-out voices are removed."""
    _check(cfg.model_dump_json())


@functools.lru_cache(maxsize=8)
def _check(cfg_json: str) -> None:
    cfg = SynthConfig.model_validate_json(cfg_json)
    backends = list(cfg.tts_mix())
    offline = [b for b in backends if b != "openai"]
    for name in ("user_voices", "assistant_voices", "heldout_voices"):
        for v in getattr(cfg, name) or []:
            if name == "heldout_voices" and v.startswith("+"):
                if not _variant_exists(v):
                    raise ValueError(f"synth.heldout_voices: {v!r} is not an espeak-ng variant "
                                     f"(e.g. +m7, +f4; see espeak-ng-data/voices/!v)")
                continue
            if "openai" in backends:
                continue  # an OpenAI-compatible server's names cannot be checked offline
            owner = backend_of(v)
            if owner is None or (name != "heldout_voices" and owner not in offline):
                raise ValueError(f"synth.{name}: {v!r} is not a voice of the TTS backend(s) "
                                 f"{', '.join(backends)} (espeak-ng: LANGUAGE[+VARIANT] such as en-us+m3; "
                                 f"Piper: {', '.join(_piper_names())})")
    for backend in backends:
        for speaker in ("user", "assistant"):
            if not pool(cfg, backend, speaker):
                raise ValueError(f"synth: no {speaker} voice left for the {backend} backend "
                                 f"(synth.{speaker}_voices minus synth.heldout_voices is empty for it)")


def _piper_names() -> list[str]:
    from . import piper_tts as P
    return list(P.VOICES)


def pool(cfg: SynthConfig, backend: str, speaker: str, engine=None) -> tuple[str, ...]:
    """Voices ``speaker`` draws from when voiced by ``backend``: ``synth.<speaker>_voices`` (the names
    that belong to ``backend``) or the backend's default pool (``engine``'s own when it has one),
    minus ``synth.heldout_voices``."""
    override = cfg.user_voices if speaker == "user" else cfg.assistant_voices
    if override is not None:
        names = tuple(v for v in override if backend == "openai" or backend_of(v) == backend)
    else:
        attr = "user_voices" if speaker == "user" else "assistant_voices"
        names = tuple(getattr(engine, attr, None) or default_pool(backend, speaker))
    return tuple(v for v in names if not cfg.voice_held_out(v))
