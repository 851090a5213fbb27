"""Controllable TTS behind one interface: espeak-ng (ctypes, embedded), the Piper neural voice
(:mod:`data_prep.synth.piper_tts`) and an OpenAI-compatible ``/v1/audio/speech`` client.

All return a :class:`Speech`: 16 kHz mono float32 plus per-word timings (exact for espeak-ng
from its word events, for Piper from its phoneme durations; estimated from character counts over
the voiced region for HTTP TTS).
Style (emotion / pitch / speed, the 7/3/3 classes of OmniChat) maps to espeak's pitch, range,
rate, volume and word gap, plus the cues both backends share (:data:`prosody.EMOTION_CUES`:
rising / falling glides, a trembling voice), made by Praat on espeak's output.

espeak-ng keeps global state: one engine per process. :func:`get_tts` returns a lazily built,
process-wide instance so that a Ray worker that calls ``generate_dialogue`` many times
initialises it once.
"""
from __future__ import annotations

import ctypes
import io
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from .prosody import emotion_cues

SAMPLE_RATE_HZ = 16000
_WORD_RE = re.compile(r"\S+")

# espeak-ng parameters: rate (words/min), volume (0..200), pitch (0..100), range (0..100), word gap (10 ms units)
_BASE = {"rate": 170, "volume": 100, "pitch": 50, "range": 50, "wordgap": 0}
_EMOTION = {  # multiplicative rate, additive pitch, absolute range, multiplicative volume, word gap
    "neutral": (1.00, 0, 50, 1.00, 0),
    "happy": (1.10, 12, 85, 1.10, 0),
    "sad": (0.80, -14, 15, 0.75, 2),
    "angry": (1.15, 4, 95, 1.35, 0),
    "surprised": (1.05, 22, 100, 1.10, 0),
    "fearful": (1.20, 16, 30, 0.85, 1),
    "disgusted": (0.90, -8, 65, 1.00, 1),
}
_PITCH = {"high": 18, "normal": 0, "low": -18}
_SPEED = {"fast": 1.30, "normal": 1.0, "slow": 0.75}
USER_VOICES = ("en-us+m3", "en+m1", "en-us+m7", "en+m4", "en-us+f4", "en+Andy", "en-us+m2", "en+f5")
ASSISTANT_VOICES = ("en+f3", "en-us+f2", "en+f1", "en-us+m5", "en+linda", "en+Annie")


@dataclass
class Word:
    text: str
    start_s: float
    end_s: float
    char_start: int
    char_end: int


@dataclass
class Speech:
    """Synthesised utterance: ``wave`` float32 at 16 kHz, ``words`` timed relative to its start."""
    wave: np.ndarray
    words: list[Word] = field(default_factory=list)
    timing: str = "word"  # "word" (backend) | "estimated" (from character counts)
    phones: list[tuple[str, float, float]] = field(default_factory=list)
    """(IPA phoneme, start_s, end_s) when the backend knows them (espeak-ng, Piper); else empty."""

    @property
    def duration_s(self) -> float:
        return len(self.wave) / SAMPLE_RATE_HZ


def style_params(emotion: str = "neutral", pitch: str = "normal", speed: str = "normal") -> dict[str, int]:
    """espeak-ng parameter values for a style; raises ValueError on unknown class names."""
    for name, table, val in (("emotion", _EMOTION, emotion), ("pitch", _PITCH, pitch), ("speed", _SPEED, speed)):
        if val not in table:
            raise ValueError(f"unknown {name} {val!r}: choose one of {', '.join(table)}")
    r, dp, rng, vol, gap = _EMOTION[emotion]
    return {"rate": int(round(_BASE["rate"] * r * _SPEED[speed])),
            "volume": int(round(_BASE["volume"] * vol)),
            "pitch": int(np.clip(_BASE["pitch"] + dp + _PITCH[pitch], 0, 99)),
            "range": int(rng),
            "wordgap": int(gap + (1 if speed == "slow" else 0))}


def _resample(wave: np.ndarray, sr_hz: int) -> np.ndarray:
    if sr_hz == SAMPLE_RATE_HZ:
        return wave.astype(np.float32, copy=False)
    import soxr
    return soxr.resample(wave, sr_hz, SAMPLE_RATE_HZ, quality="HQ").astype(np.float32)


def refine_word_ends(wave: np.ndarray, words: list[Word], frame_ms: float = 5.0, thresh_db: float = -40.0) -> None:
    """Set each word's ``end_s`` to the last loud frame before the next word starts (in place).

    Word events give start times only; the end of word k is where its energy stops, not
    the next word's onset (which includes the inter-word pause).
    """
    hop = int(SAMPLE_RATE_HZ * frame_ms / 1000)
    n = len(wave) // hop
    if n == 0 or not words:
        return
    env = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = 20 * np.log10(env / (env.max() + 1e-12)) > thresh_db
    for k, w in enumerate(words):
        nxt = words[k + 1].start_s if k + 1 < len(words) else len(wave) / SAMPLE_RATE_HZ
        a, b = int(w.start_s * 1000 / frame_ms), max(int(nxt * 1000 / frame_ms), int(w.start_s * 1000 / frame_ms) + 1)
        idx = np.flatnonzero(loud[a:min(b, n)])
        w.end_s = float(min(nxt, (a + idx[-1] + 1) * frame_ms / 1000)) if len(idx) else float(min(nxt, w.start_s + 0.05))


# --------------------------------------------------------------------------- espeak-ng
class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakTTS:
    """espeak-ng through ctypes (library and data from ``espeakng-loader``).

    espeak-ng keeps synthesis state in C statics that survive ``espeak_Terminate`` (pitch
    flutter phase, wave phase), so the same text synthesised twice differs slightly. For
    byte-identical output the library is unloaded (``dlclose``) and reloaded before every
    utterance after the first (~4 ms). Its noise generator (breath in variants such as
    ``en+f5``) is seeded from the wall clock at initialisation, so two calls that straddle a
    second boundary differed too: it is seeded with a constant after every (re)load. Calls are
    serialised by a lock: use one process per concurrent synthesis."""

    RAND_SEED = 1
    INIT_OPTIONS = 0x0001 | 0x0002  # espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA: phoneme timings

    _lock = threading.Lock()

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - dependency of the project
            raise RuntimeError("espeak TTS needs the 'espeakng-loader' package: pip install espeakng-loader") from e
        self._lib_path = espeakng_loader.get_library_path()
        self._data_path = espeakng_loader.get_data_path().encode()
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, int]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: espeak calls it from C
        self._lib = None
        self._dirty = False
        self._open()

    def _open(self) -> None:
        lib = ctypes.CDLL(self._lib_path)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(2, 0, self._data_path, self.INIT_OPTIONS)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}); is espeak-ng-data intact?")
        lib.espeak_SetSynthCallback(self._cb)
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed(self.RAND_SEED)
        self._lib, self.native_rate_hz, self._dirty = lib, int(rate), False

    def _reload(self) -> None:
        import _ctypes
        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)
        self._lib = None
        self._open()

    def _on_audio(self, wav, n, events):
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events[i].type != 0:
            ev = events[i]
            if ev.type == 1:  # word
                self._events.append((ev.text_position, ev.length, ev.audio_position, ev.sample))
            elif ev.type == 7:  # phoneme (IPA, see INIT_OPTIONS)
                self._phones.append((bytes(ev.id).split(b"\0")[0].decode("utf-8", "replace"), ev.sample))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str = "en-us", emotion: str = "neutral", pitch: str = "normal",
                   speed: str = "normal") -> Speech:
        if not text.strip():
            raise ValueError("cannot synthesise empty text")
        params = style_params(emotion, pitch, speed)
        raw = text.encode("utf-8")
        with self._lock:
            if self._dirty:
                self._reload()
            self._dirty = True
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng refused voice {voice!r} (try en, en-us, en+f3, en-us+m3)")
            for pid, key in ((1, "rate"), (2, "volume"), (3, "pitch"), (4, "range"), (7, "wordgap")):
                self._lib.espeak_SetParameter(pid, params[key], 0)
            self._chunks, self._events, self._phones = [], [], []
            err = self._lib.espeak_Synth(raw, len(raw) + 1, 0, 1, 0, 1, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err}")
            pcm = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
            events, phone_events = list(self._events), list(self._phones)
        wave = _resample(pcm.astype(np.float32) / 32768.0, self.native_rate_hz)
        wave = emotion_cues(wave, emotion)  # glides / tremolo espeak cannot make (shared with Piper)
        words = _words_from_events(text, events, self.native_rate_hz)
        refine_word_ends(wave, words)
        return Speech(wave=wave, words=words, timing="word",
                      phones=_phones_from_events(phone_events, self.native_rate_hz, len(wave) / SAMPLE_RATE_HZ))


def _phones_from_events(events, native_rate_hz: int, duration_s: float) -> list[tuple[str, float, float]]:
    """espeak phoneme events (IPA name, start sample) -> (phoneme, start_s, end_s); a phoneme ends
    where the next starts; pauses (empty names) are dropped; zero-length phonemes too."""
    out = []
    for k, (name, sample) in enumerate(events):
        start = min(sample / native_rate_hz, duration_s)
        end = min(events[k + 1][1] / native_rate_hz, duration_s) if k + 1 < len(events) else duration_s
        if name.strip() and end > start:
            out.append((name, round(start, 5), round(end, 5)))
    return out


def _words_from_events(text: str, events, native_rate_hz: int) -> list[Word]:
    """Map espeak word events (1-based character positions, sample offsets) to :class:`Word`."""
    tokens = list(_WORD_RE.finditer(text))
    out: list[Word] = []
    for pos, _length, _ms, sample in events:
        c0 = max(pos - 1, 0)  # espeak's text_position: 1-based character index
        m = next((t for t in tokens if t.end() > c0), None)  # token containing c0, or the next one
        if m is None or (out and m.start() < out[-1].char_end):
            continue  # espeak may split one token (e.g. "3.5") into several words: keep the first
        start = sample / native_rate_hz
        out.append(Word(text=m.group(), start_s=start, end_s=start, char_start=m.start(), char_end=m.end()))
    return out


_PROCESS_TTS: dict[str, object] = {}


def get_tts(kind: str = "espeak", base_url: str | None = None, piper_model: str | None = None):
    """Process-wide TTS instance (lazily created, reused across calls). ``piper``: the Piper neural
    voice of :mod:`data_prep.synth.piper_tts` (``piper_model``: None = the packaged joe voice)."""
    key = f"{kind}|{base_url if kind == 'openai' else ''}|{piper_model if kind == 'piper' else ''}"
    if key not in _PROCESS_TTS:
        if kind == "espeak":
            _PROCESS_TTS[key] = EspeakTTS()
        elif kind == "piper":
            from .piper_tts import PiperTTS
            _PROCESS_TTS[key] = PiperTTS(piper_model)
        elif kind == "openai":
            if not base_url:
                raise ValueError("synth.tts=openai needs synth.tts_base_url (e.g. http://127.0.0.1:8880/v1)")
            _PROCESS_TTS[key] = OpenAITTS(base_url)
        else:
            raise ValueError(f"unknown TTS {kind!r}: choose espeak, piper or openai")
    return _PROCESS_TTS[key]


# ------------------------------------------------------------------ OpenAI-compatible
class OpenAITTS:
    """Client for an OpenAI-compatible ``POST {base_url}/audio/speech`` returning WAV.

    Model from ``$OMNI_TTS_MODEL`` (default ``tts-1``), key from ``$OMNI_TTS_API_KEY`` or
    ``$OMNI_LLM_API_KEY``. Speaker voices: ``$OMNI_TTS_USER_VOICES`` / ``$OMNI_TTS_ASSISTANT_VOICES``
    (comma lists; defaults alloy,echo,fable / nova,shimmer). Emotion goes into ``instructions``.
    Word timings are estimated (character-proportional over the voiced region).
    """

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self.model = model or os.environ.get("OMNI_TTS_MODEL", "tts-1")
        self.api_key = api_key or os.environ.get("OMNI_TTS_API_KEY") or os.environ.get("OMNI_LLM_API_KEY")
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.user_voices = tuple(os.environ.get("OMNI_TTS_USER_VOICES", "alloy,echo,fable").split(","))
        self.assistant_voices = tuple(os.environ.get("OMNI_TTS_ASSISTANT_VOICES", "nova,shimmer").split(","))

    def synthesize(self, text: str, voice: str = "alloy", emotion: str = "neutral", pitch: str = "normal",
                   speed: str = "normal") -> Speech:
        import soundfile as sf
        style_params(emotion, pitch, speed)  # validates the classes
        body = {"model": self.model, "input": text, "voice": voice, "response_format": "wav",
                "speed": _SPEED[speed], "instructions": f"Speak in a {emotion} tone with {pitch} pitch."}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(f"{self.base_url}/audio/speech", data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    payload = resp.read()
                try:
                    wave, sr = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
                except Exception as e:
                    raise ValueError(f"TTS server returned undecodable audio ({len(payload)} bytes): {e}") from None
                wave = _resample(wave.mean(axis=1), sr)
                return Speech(wave=wave, words=estimate_words(text, wave), timing="estimated")
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code < 500 and e.code != 429:
                    raise RuntimeError(f"TTS server {self.base_url} refused the request: {last}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(self.backoff_s * 2 ** attempt)
        raise RuntimeError(f"TTS server {self.base_url} failed after {self.max_retries + 1} attempts ({last})")


def estimate_words(text: str, wave: np.ndarray) -> list[Word]:
    """Spread words over the voiced region in proportion to their character counts."""
    matches = list(_WORD_RE.finditer(text))
    env = np.abs(wave)
    loud = np.flatnonzero(env > 0.02 * (env.max() + 1e-9))
    t0, t1 = (loud[0], loud[-1] + 1) if len(loud) else (0, len(wave))
    total = sum(len(m.group()) + 1 for m in matches) or 1
    out, acc = [], 0
    for m in matches:
        a = t0 + (t1 - t0) * acc / total
        acc += len(m.group()) + 1
        b = t0 + (t1 - t0) * (acc - 1) / total
        out.append(Word(m.group(), a / SAMPLE_RATE_HZ, b / SAMPLE_RATE_HZ, m.start(), m.end()))
    return out
