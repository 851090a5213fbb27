"""Acoustic scenes: procedural event sounds, music beds and background noise (embedded default),
or clips from folders of real recordings (MUSAN / ESC-50 layouts: wav/flac files in folders).

Every generator takes a ``numpy.random.Generator`` and returns 16 kHz mono float32 peaking at
about 0.5; :func:`scale_to_snr` sets its level against the speech it is mixed with.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

SR = 16000
AUDIO_EXTS = (".wav", ".flac", ".ogg")


def _t(dur_s: float) -> np.ndarray:
    return np.arange(int(dur_s * SR)) / SR


def _norm(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (x * (peak / (np.abs(x).max() + 1e-9))).astype(np.float32)


def _place(out: np.ndarray, clip: np.ndarray, at: int) -> None:
    end = min(len(out), at + len(clip))
    if end > at >= 0:
        out[at:end] += clip[: end - at]


def _lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """One-pole low-pass, vectorised through the spectrum (cheap and deterministic)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return np.fft.irfft(spec / np.sqrt(1 + (f / cutoff_hz) ** 2), len(x))


def _tone(f_hz, dur_s, harmonics=(1.0,), decay_s=None, rng=None):
    t = _t(dur_s)
    x = sum(a * np.sin(2 * np.pi * f_hz * (k + 1) * t) for k, a in enumerate(harmonics))
    if decay_s:
        x = x * np.exp(-t / decay_s)
    return x


def _burst(rng, dur_s, f_hz, decay_s):  # a resonant impact: noise + damped tone
    t = _t(dur_s)
    return (rng.standard_normal(len(t)) * 0.3 + np.sin(2 * np.pi * f_hz * t)) * np.exp(-t / decay_s)


# --------------------------------------------------------------------------- events
def ev_knock(rng):
    out = np.zeros(int(1.4 * SR))
    for k in range(int(rng.integers(2, 5))):
        _place(out, _burst(rng, 0.12, rng.uniform(120, 220), 0.02), int((0.05 + k * rng.uniform(0.18, 0.3)) * SR))
    return out


def ev_doorbell(rng):
    f = rng.uniform(600, 900)
    a, b = _tone(f, 0.9, (1, .3, .1), 0.35), _tone(f * 0.8, 1.2, (1, .3, .1), 0.45)
    out = np.zeros(int(1.8 * SR))
    _place(out, a, 0)
    _place(out, b, int(0.5 * SR))
    return out


def ev_phone_ring(rng):
    t = _t(0.8)
    f1, f2 = rng.uniform(400, 480), rng.uniform(440, 520)
    ring = (np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t)) * (np.sin(2 * np.pi * 20 * t) > 0)
    out = np.zeros(int(2.2 * SR))
    _place(out, ring, 0)
    _place(out, ring, int(1.2 * SR))
    return out


def ev_dog_bark(rng):
    out = np.zeros(int(1.5 * SR))
    for k in range(int(rng.integers(1, 4))):
        t = _t(0.18)
        f0 = rng.uniform(350, 600) * (1 - 0.4 * t / t[-1])
        ph = 2 * np.pi * np.cumsum(f0) / SR
        bark = (np.sign(np.sin(ph)) * 0.5 + rng.standard_normal(len(t)) * 0.4) * np.sin(np.pi * t / t[-1])
        _place(out, _lowpass(bark, 1500), int(k * rng.uniform(0.3, 0.45) * SR))
    return out


def ev_alarm(rng):
    t = _t(1.6)
    f = rng.uniform(2500, 3400)
    return np.sign(np.sin(2 * np.pi * f * t)) * 0.6 * (np.sin(2 * np.pi * rng.uniform(3, 5) * t) > 0)


def ev_applause(rng):
    n = int(rng.uniform(1.5, 2.5) * SR)
    clicks = (rng.random(n) < 0.02) * rng.standard_normal(n)
    env = np.minimum(1, np.arange(n) / (0.2 * SR)) * np.minimum(1, (n - np.arange(n)) / (0.5 * SR))
    return _lowpass(np.convolve(clicks, np.exp(-np.arange(40) / 6), "same"), 5000) * env


def ev_rain(rng):
    n = int(rng.uniform(2.0, 3.0) * SR)
    drops = (rng.random(n) < 0.004) * rng.standard_normal(n) * 3
    bed = _lowpass(rng.standard_normal(n), rng.uniform(2000, 5000))
    env = np.minimum(1, np.arange(n) / (0.5 * SR)) * np.minimum(1, (n - np.arange(n)) / (0.5 * SR))
    return (bed + np.convolve(drops, np.exp(-np.arange(60) / 10), "same")) * env


def ev_siren(rng):
    t = _t(2.5)
    f = rng.uniform(600, 800) + rng.uniform(200, 400) * np.sin(2 * np.pi * rng.uniform(0.4, 1.2) * t)
    return np.sin(2 * np.pi * np.cumsum(f) / SR) + 0.3 * np.sin(4 * np.pi * np.cumsum(f) / SR)


def ev_car_horn(rng):
    f = rng.uniform(350, 500)
    dur_s = rng.uniform(0.4, 0.8)
    return np.tanh(2 * (_tone(f, dur_s, (1, .6, .4, .3)) + _tone(f * 1.25, dur_s, (1, .5, .3))))


def ev_clock_tick(rng):
    out = np.zeros(int(2.0 * SR))
    for k in range(4):
        _place(out, _burst(rng, 0.03, 2500 if k % 2 else 2000, 0.004), int((0.1 + 0.5 * k) * SR))
    return out


def ev_thunder(rng):
    n = int(rng.uniform(2.0, 3.0) * SR)
    env = np.exp(-np.arange(n) / (rng.uniform(0.5, 0.9) * SR)) * (1 - np.exp(-np.arange(n) / (0.05 * SR)))
    return _lowpass(rng.standard_normal(n), 150) * env


def ev_kettle(rng):
    t = _t(2.0)
    f = rng.uniform(1800, 2400) * (1 + 0.01 * np.sin(2 * np.pi * 6 * t))
    return np.sin(2 * np.pi * np.cumsum(f) / SR) * np.minimum(1, t / 0.8) + 0.1 * rng.standard_normal(len(t))


def ev_bird(rng):
    out = np.zeros(int(1.8 * SR))
    for k in range(int(rng.integers(3, 7))):
        t = _t(rng.uniform(0.06, 0.15))
        f = rng.uniform(2500, 4500) + rng.uniform(-1500, 1500) * t / t[-1]
        _place(out, np.sin(2 * np.pi * np.cumsum(f) / SR) * np.sin(np.pi * t / t[-1]), int(rng.uniform(0, 1.6) * SR))
    return out


def ev_footsteps(rng):
    out = np.zeros(int(2.2 * SR))
    for k in range(int(rng.integers(3, 6))):
        _place(out, _lowpass(_burst(rng, 0.08, 90, 0.02), 800), int((0.05 + k * rng.uniform(0.4, 0.55)) * SR))
    return out


def ev_typing(rng):
    out = np.zeros(int(1.8 * SR))
    for at in np.sort(rng.uniform(0, 1.7, int(rng.integers(8, 16)))):
        _place(out, _burst(rng, 0.02, rng.uniform(3000, 5000), 0.003), int(at * SR))
    return out


def ev_glass(rng):
    f = rng.uniform(1800, 3200)
    return _tone(f, 1.2, (1, 0, .4, 0, .2), 0.3) + 0.5 * _tone(f * 1.07, 1.2, (1,), 0.25)


EVENT_SYNTHS = {"knock": ev_knock, "doorbell": ev_doorbell, "phone_ring": ev_phone_ring, "dog_bark": ev_dog_bark,
                "alarm": ev_alarm, "applause": ev_applause, "rain": ev_rain, "siren": ev_siren,
                "car_horn": ev_car_horn, "clock_tick": ev_clock_tick, "thunder": ev_thunder, "kettle": ev_kettle,
                "bird": ev_bird, "footsteps": ev_footsteps, "typing": ev_typing, "glass": ev_glass}
# catalogue tag -> folder / ESC-50 category names that count as the same sound
EVENT_ALIASES = {"knock": ("knock", "door_wood_knock", "door_knock"), "dog_bark": ("dog_bark", "dog", "bark"),
                 "alarm": ("alarm", "clock_alarm", "smoke_alarm"), "applause": ("applause", "clapping"),
                 "thunder": ("thunder", "thunderstorm"), "bird": ("bird", "chirping_birds", "birds"),
                 "typing": ("typing", "keyboard_typing"), "glass": ("glass", "glass_breaking"),
                 "phone_ring": ("phone_ring", "telephone", "ringtone"), "kettle": ("kettle", "water_drops")}


def synth_event(tag: str, rng: np.random.Generator) -> np.ndarray:
    if tag not in EVENT_SYNTHS:
        raise ValueError(f"unknown event tag {tag!r}: choose one of {', '.join(EVENT_SYNTHS)}")
    return _norm(EVENT_SYNTHS[tag](rng))


# ---------------------------------------------------------------------------- music
_NOTE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_PROGRESSIONS = {"major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4)), "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4))}
_TIMBRES = {  # harmonic amplitudes, decay (s; None = sustained), attack (s)
    "piano": ((1, .5, .25, .12, .06), 0.5, 0.005), "organ": ((1, .8, .6, .4, .3, .2), None, 0.02),
    "pluck": ((1, .6, .4, .3, .2, .1), 0.25, 0.002), "pad": ((1, .3, .1), None, 0.25),
    "musicbox": ((1, 0, .3, 0, .1), 0.4, 0.002), "brass": ((1, .9, .8, .6, .4, .3), None, 0.05)}


def _note(f_hz, dur_s, timbre):
    harm, decay, attack = _TIMBRES[timbre]
    t = _t(dur_s)
    env = np.minimum(1, t / attack) * (np.exp(-t / decay) if decay else np.minimum(1, (t[-1] - t) / 0.05 + 1e-3))
    return _tone(f_hz, dur_s, harm) * env


def synth_music(dur_s: float, rng: np.random.Generator, tempo_bpm: int = 100, key: str = "C", mode: str = "major",
                timbre: str = "piano") -> np.ndarray:
    """A music bed: chord progression (bass + chord) and a scale melody, one note per beat."""
    if mode not in _SCALES or timbre not in _TIMBRES or key not in _NOTE:
        raise ValueError(f"music needs mode in {list(_SCALES)}, timbre in {list(_TIMBRES)}, key in {list(_NOTE)}")
    beat_s = 60.0 / tempo_bpm
    out = np.zeros(int(dur_s * SR) + SR)
    scale, prog = _SCALES[mode], _PROGRESSIONS[mode][int(rng.integers(3))]
    root = 220.0 * 2 ** ((_NOTE[key] - 9) / 12)
    deg = lambda d, octv=0: root * 2 ** ((scale[d % 7] + 12 * (d // 7 + octv)) / 12)
    n_beats, step = int(dur_s / beat_s) + 1, 0
    for b in range(n_beats):
        at = int(b * beat_s * SR)
        chord = prog[(b // 4) % len(prog)]
        if b % 4 == 0:  # chord + bass per bar
            for d in (chord, chord + 2, chord + 4):
                _place(out, 0.25 * _note(deg(d), 4 * beat_s, timbre), at)
            _place(out, 0.4 * _note(deg(chord, -1), 4 * beat_s, "organ"), at)
        step = int(np.clip(step + rng.integers(-2, 3), -2, 9))
        _place(out, 0.5 * _note(deg(chord + step, 1), beat_s * 0.95, timbre), at)
    return _norm(out[: int(dur_s * SR)])


# ---------------------------------------------------------------------------- noise
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")


def synth_noise(dur_s: float, rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, str]:
    """Stationary background noise (``kind`` drawn when None): returns (wave, kind)."""
    kind = kind or NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    n = max(int(dur_s * SR), 16)
    if kind == "hum":
        t = np.arange(n) / SR
        f = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) + 0.1 * rng.standard_normal(n)
        return _norm(x), kind
    white = rng.standard_normal(n)
    if kind == "white":
        return _norm(white), kind
    spec = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    if kind in ("pink", "babble"):
        x = np.fft.irfft(spec / np.sqrt(f), n)
        if kind == "babble":  # speech-shaped, syllable-rate amplitude modulation
            x = _lowpass(x, 3000) * (1 + 0.6 * np.sin(2 * np.pi * rng.uniform(3, 5) * np.arange(n) / SR))
        return _norm(x), kind
    if kind == "brown":
        return _norm(np.fft.irfft(spec / f, n)), kind
    raise ValueError(f"unknown noise kind {kind!r}: choose one of {', '.join(NOISE_KINDS)}")


# ----------------------------------------------------------------------- real clips
@lru_cache(maxsize=16)
def list_clips(folder: str) -> tuple[tuple[str, str], ...]:
    """(path, tag) of every audio file under ``folder``, sorted. Tag = ESC-50 category when a
    ``meta/esc50.csv`` sits next to the audio folder, else the parent folder's name (MUSAN)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"clip folder {folder} does not exist (set synth.*_dir to a folder of wav/flac)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTS)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(AUDIO_EXTS)} files under {folder}")
    cats: dict[str, str] = {}
    for meta in (root / "meta" / "esc50.csv", root.parent / "meta" / "esc50.csv"):
        if meta.is_file():
            with open(meta) as fh:
                cats = {row["filename"]: row["category"] for row in csv.DictReader(fh)}
            break
    return tuple((str(p), cats.get(p.name, p.parent.name)) for p in files)


def load_clip(path: str, max_s: float | None = None) -> np.ndarray:
    import soundfile as sf
    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != SR:
        import soxr
        wave = soxr.resample(wave, sr, SR).astype(np.float32)
    if max_s:
        wave = wave[: int(max_s * SR)]
    return _norm(wave) if np.abs(wave).max() > 0 else wave


def pick_clip(folder: str, rng: np.random.Generator, tag: str | None = None) -> tuple[np.ndarray, str, str] | None:
    """A clip (wave, tag, path) from a folder; with ``tag``, only files whose category matches it
    (see :data:`EVENT_ALIASES`); None when nothing matches."""
    clips = list_clips(folder)
    if tag is not None:
        names = EVENT_ALIASES.get(tag, (tag,))
        clips = tuple(c for c in clips if c[1].lower() in names)
        if not clips:
            return None
    path, ctag = clips[int(rng.integers(len(clips)))]
    return load_clip(path, max_s=30.0), (tag or ctag), path


def loop_to(wave: np.ndarray, n: int) -> np.ndarray:
    return np.tile(wave, int(np.ceil(n / max(len(wave), 1))))[:n] if len(wave) else np.zeros(n, np.float32)


def power(x: np.ndarray) -> float:
    """Mean power over the active part (frames above -40 dB of the peak frame)."""
    hop = 160
    n = len(x) // hop
    if n == 0:
        return float(np.mean(x.astype(np.float64) ** 2) + 1e-12)
    p = np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    return float(p[p > p.max() * 1e-4].mean() + 1e-12)


def scale_to_snr(clip: np.ndarray, ref_power: float, snr_db: float) -> np.ndarray:
    """Scale ``clip`` so that 10 log10(ref_power / power(clip)) == snr_db."""
    return (clip * np.sqrt(ref_power / (power(clip) * 10 ** (snr_db / 10)))).astype(np.float32)
