"""Built-in phonetic speech units: a streaming phone recogniser in, a one-voice vocoder out.

Units (25 Hz, one per 40 ms = 640 samples at 16 kHz)
    ``unit = 1 + phone * 3 + pitch`` for a voiced or unvoiced phone, ``0`` for silence.
    ``phone`` is one of ~45 English phone classes (IPA, stress dropped, dialect variants merged:
    :data:`PHONES`); ``pitch`` is the unit's F0 relative to the speaker's running mean, in three
    bins (low < -``pitch_bin`` <= mid <= +``pitch_bin`` < high; unvoiced phones are mid). So a
    unit says *what* is said and the intonation (rises, falls), not *who* says it: any voice maps
    onto the same ~136 units, which is what a small duplex model can learn from, and turn-taking
    cues (a comma's rise, a sentence-final fall) survive.

Encoding (causal, with a fixed look-ahead of ``lookahead_frames`` 10 ms frames)
    Per 10 ms frame: a 40-band log-mel spectrum of the 32 ms ending at the frame's end, and a YIN
    F0/periodicity estimate on the same window. A dilated causal convolutional recogniser (numpy
    at run time, trained with torch by :mod:`omni.speech.phonetic_train`) gives phone
    log-probabilities for the frame ``lookahead_frames`` back; a unit's phone is the argmax of
    the sum over its 4 frames. Frames are processed in blocks of exactly one unit with the same
    shapes whether the audio comes whole or in pieces, so the streaming encoder equals
    ``encode(whole)`` bit for bit. A unit whose own samples are below ``silence_dbfs`` is silence.

Decoding (streaming, latency 1 unit + 10 ms)
    A causal convolutional decoder over unit embeddings predicts, for the unit one step back, 4
    frames of the *target voice* (the Piper voice ``joe`` by default): 24 cepstral coefficients
    of a 64-band log-mel envelope, log-F0 and voicing. A source-filter vocoder renders them:
    a phase-continuous pulse train at F0 mixed with seeded noise by voicing, shaped per 10 ms
    frame by the minimum-phase filter of the envelope, overlap-added with a 20 ms Hann window.
    Silence units decode to exact zeros. ``decode`` is the stream decoder fed once and flushed.

Measured figures (round-trip Whisper-base WER, speed) are in docs/speech_units.md.
The folder holds ``speech_tokenizer.json`` (``layout`` = :data:`LAYOUT`) and ``weights.npz``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from omni.speech.base import (
    SAMPLE_RATE_HZ,
    SpeechTokenizerError,
    check_units,
    check_wave,
    read_descriptor,
    write_descriptor,
)

KIND = "phonetic"
LAYOUT = 1                 # bump when the weights or the unit layout change meaning
HOP = 160                  # 10 ms analysis frame
FRAMES_PER_UNIT = 4        # 40 ms unit
UNIT_SAMPLES = HOP * FRAMES_PER_UNIT
WIN = 512                  # 32 ms analysis window, ending at the frame's end
N_MELS = 40                # recogniser input
ENV_MELS, N_CEP = 64, 24   # decoder envelope
SYN_FFT = 1024
PITCH_BINS = 3
F0_MIN_HZ, F0_MAX_HZ = 60.0, 420.0

# Phone classes: espeak-ng's IPA (stress marks dropped) with dialect variants merged (MERGE).
PHONES = ("aɪ", "aʊ", "b", "d", "dʒ", "eɪ", "f", "h", "iː", "j", "k", "l", "m", "n", "oʊ", "p", "s",
          "t", "tʃ", "uː", "v", "w", "z", "æ", "ð", "ŋ", "ɑː", "ɑːɹ", "ɔɪ", "ɔː", "ɔːɹ", "ə", "ɚ", "ɛ",
          "ɛɹ", "ɜː", "ɡ", "ɪ", "ɪɹ", "ɹ", "ʃ", "ʊ", "ʊɹ", "ʌ", "θ")
MERGE = {"əʊ": "oʊ", "ɒ": "ɑː", "iə": "ɪɹ", "eə": "ɛɹ", "ʊə": "ʊɹ", "ɐ": "ʌ", "ᵻ": "ɪ", "i": "iː",
         "a": "æ", "aɪə": "aɪ", "aɪɚ": "aɪ", "ʒ": "ʃ", "ɔ": "ɔː", "ɾ": "t", "əl": "l", "o": "oʊ",
         "e": "ɛ", "r": "ɹ", "ɫ": "l", "ʔ": "t", "x": "k", "ɬ": "l", "u": "uː", "ɑ": "ɑː", "ɜ": "ɜː",
         "ɑɹ": "ɑːɹ", "ɔɹ": "ɔːɹ", "g": "ɡ", "ɐɹ": "ɚ", "əɹ": "ɚ", "ɜːɹ": "ɜː", "iːə": "ɪɹ",
         "aɪʊ": "aɪ", "n̩": "n", "l̩": "l", "m̩": "m"}
_PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}


def canonical_phone(p: str) -> str | None:
    """The class of an IPA phoneme string (stress and syllabic marks dropped), None for a pause."""
    p = p.replace("ˈ", "").replace("ˌ", "").replace("ˑ", "").strip()
    if not p or p in {"_", "_:", "||", "|"}:
        return None
    p = MERGE.get(p, p)
    return p if p in _PHONE_INDEX else None


def phone_id(p: str) -> int:
    """Class index + 1 (0 = silence/pause; unknown phonemes are silence, so check coverage)."""
    c = canonical_phone(p)
    return 0 if c is None else _PHONE_INDEX[c] + 1


def num_units(n_phones: int = len(PHONES)) -> int:
    return 1 + n_phones * PITCH_BINS


# --------------------------------------------------------------------------- analysis
def _mel(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa
    return librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=WIN, n_mels=n_mels, fmin=fmin, fmax=fmax,
                               dtype=np.float64)


class Frontend:
    """Per-frame analysis shared by encoder, trainer and targets (numpy, float64 inside)."""

    def __init__(self):
        self.window = np.hanning(WIN + 1)[:-1]
        self.mel = _mel(N_MELS, 40.0, 7600.0)                 # (40, 257)
        self.env_mel = _mel(ENV_MELS, 0.0, 8000.0)            # (64, 257)
        self.env_pinv = np.linalg.pinv(self.env_mel)          # (257, 64)
        self.tau_lo, self.tau_hi = int(SAMPLE_RATE_HZ / F0_MAX_HZ), int(SAMPLE_RATE_HZ / F0_MIN_HZ)
        from scipy.fft import dct, idct
        self._dct, self._idct = dct, idct

    def frames(self, padded: np.ndarray) -> np.ndarray:
        """Windows (n, WIN) of ``padded`` = (WIN - HOP) samples of context + n hops."""
        n = (padded.size - (WIN - HOP)) // HOP
        return np.lib.stride_tricks.sliding_window_view(padded[: WIN - HOP + n * HOP], WIN)[::HOP][:n]

    def analyse(self, fr: np.ndarray) -> dict[str, np.ndarray]:
        """log-mel (n, 40), cepstra (n, 24), log-F0 (n,), periodicity (n,), own-hop dB (n,)."""
        fr = fr.astype(np.float64)
        power = np.abs(np.fft.rfft(fr * self.window, axis=1)) ** 2
        logmel = np.log(power @ self.mel.T + 1e-8)
        env = np.log(power @ self.env_mel.T + 1e-10)
        cep = self._dct(env, type=2, norm="ortho", axis=1)[:, :N_CEP]
        lf0, per = self._yin(fr)
        own_db = 10 * np.log10((fr[:, -HOP:] ** 2).mean(1) + 1e-20)
        return {"logmel": logmel.astype(np.float32), "cep": cep, "lf0": lf0, "per": per, "db": own_db}

    def _yin(self, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """YIN (cumulative-mean-normalised difference) on the window's first half vs lags."""
        w = WIN // 2
        n = len(fr)
        f1 = np.fft.rfft(fr, 2 * WIN, axis=1)
        f2 = np.fft.rfft(fr[:, :w], 2 * WIN, axis=1)
        cc = np.fft.irfft(f1 * np.conj(f2), 2 * WIN, axis=1)[:, :w]
        sq = np.concatenate([np.zeros((n, 1)), np.cumsum(fr ** 2, 1)], 1)
        d = (sq[:, w] - sq[:, 0])[:, None] + (sq[:, w:2 * w] - sq[:, :w]) - 2 * cc
        d[:, 0] = 0.0
        cm = np.cumsum(d[:, 1:], 1) / np.arange(1, w)
        dn = np.ones_like(d)
        dn[:, 1:] = d[:, 1:] / np.maximum(cm, 1e-12)
        seg = dn[:, self.tau_lo:self.tau_hi]
        rows = np.arange(n)
        below = seg < 0.15
        idx = np.where(below.any(1), below.argmax(1), seg.argmin(1))
        for _ in range(8):   # walk down to the local minimum after the first dip
            nxt = np.minimum(idx + 1, seg.shape[1] - 1)
            idx = np.where(seg[rows, nxt] < seg[rows, idx], nxt, idx)
        per = seg[rows, idx]
        return np.log(SAMPLE_RATE_HZ / (self.tau_lo + idx)), per

    def envelope(self, cep: np.ndarray) -> np.ndarray:
        """Cepstra (n, 24) -> linear magnitude envelope (n, SYN_FFT//2+1)."""
        if not hasattr(self, "_cep_to_mel"):
            eye = np.eye(N_CEP, ENV_MELS)
            self._cep_to_mel = self._idct(eye, type=2, norm="ortho", axis=1)          # (24, 64)
            x, xi = np.linspace(0, 1, WIN // 2 + 1), np.linspace(0, 1, SYN_FFT // 2 + 1)
            interp = np.stack([np.interp(xi, x, row) for row in np.eye(WIN // 2 + 1)])  # (257, 513)
            self._mel_to_bins = self.env_pinv.T @ interp                                  # (64, 513)
        melp = np.exp(cep @ self._cep_to_mel)
        return np.sqrt(np.maximum(melp @ self._mel_to_bins, 1e-12))


def voiced(per: np.ndarray, db: np.ndarray) -> np.ndarray:
    return (per < 0.3) & (db > -50.0)


# --------------------------------------------------------------------------- networks
class ConvStack:
    """Dilated causal conv stack (kernel 3, residual ReLU), evaluated block by block in numpy.

    Weights: ``in_w (C, D_in)``, ``in_b``; per layer ``w (C, 3C)`` (taps t-2d, t-d, t), ``b``;
    ``out_w (D_out, C)``, ``out_b``. ``embed (K, D_in)`` replaces ``in`` input for unit ids.
    State: the last ``2 * d`` hidden vectors per layer. Same blocks in -> same numbers out."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, dilations: tuple[int, ...]):
        g = lambda k: np.asarray(weights[f"{prefix}.{k}"], np.float32)  # noqa: E731
        self.embed = g("embed") if f"{prefix}.embed" in weights else None
        self.in_w, self.in_b = g("in_w"), g("in_b")
        self.layers = [(g(f"l{i}.w"), g(f"l{i}.b"), int(d)) for i, d in enumerate(dilations)]
        self.out_w, self.out_b = g("out_w"), g("out_b")
        self.channels = self.in_w.shape[0]

    def state(self) -> list[np.ndarray]:
        return [np.zeros((2 * d, self.channels), np.float32) for _, _, d in self.layers]

    def step(self, x: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
        """x (B, D_in) float32 or (B,) int ids -> (B, D_out); updates ``state`` in place."""
        h = self.embed[x] if self.embed is not None else x.astype(np.float32)
        h = h @ self.in_w.T + self.in_b
        b = len(h)
        for i, (w, bias, d) in enumerate(self.layers):
            hist = np.concatenate([state[i], h])                  # (2d + B, C)
            taps = np.concatenate([hist[0:b], hist[d:d + b], hist[2 * d:2 * d + b]], 1)
            h = h + np.maximum(taps @ w.T + bias, 0.0)
            state[i] = hist[-2 * d:]
        return h @ self.out_w.T + self.out_b


# --------------------------------------------------------------------------- tokenizer
class PhoneticTokenizer:
    """Phone x pitch units at 25 Hz; decodes to one target voice. Build with
    ``python -m data_prep.build_units`` (``make units``); load with :meth:`load`."""

    kind = KIND
    sample_rate = SAMPLE_RATE_HZ
    hop_samples = UNIT_SAMPLES
    frame_rate_hz = SAMPLE_RATE_HZ / UNIT_SAMPLES
    silence_unit = 0

    def __init__(self, weights: dict[str, np.ndarray], info: dict):
        self.info = dict(info)
        self.weights = {k: np.asarray(v) for k, v in weights.items()}
        self.phones = tuple(info["phones"])
        self.num_units = num_units(len(self.phones))
        self.lookahead_frames = int(info["lookahead_frames"])
        self.decoder_lookahead = int(info["decoder_lookahead_units"])
        self.silence_dbfs = float(info.get("silence_dbfs", -60.0))
        self.pitch_bin = float(info.get("pitch_bin", 0.1))
        self.f0_prior_hz = float(info.get("f0_prior_hz", 140.0))
        self.f0_prior_frames = float(info.get("f0_prior_frames", 10.0))
        self.frontend = Frontend()
        self.rec = ConvStack(self.weights, "rec", tuple(info["rec_dilations"]))
        self.dec = ConvStack(self.weights, "dec", tuple(info["dec_dilations"]))
        self.feat_mu = self.weights["rec.feat_mu"].astype(np.float32)
        self.feat_sd = self.weights["rec.feat_sd"].astype(np.float32)
        self.tgt_mu = self.weights["dec.tgt_mu"].astype(np.float64)
        self.tgt_sd = self.weights["dec.tgt_sd"].astype(np.float64)
        self.noise_seed = int(info.get("noise_seed", 0))

    # ------------------------------------------------------------------ API
    def encode(self, wave: np.ndarray) -> np.ndarray:
        wave = check_wave(wave, min_samples=UNIT_SAMPLES)
        enc = self.stream_encoder()
        return np.concatenate([enc.feed(wave), enc.flush()])[: wave.size // UNIT_SAMPLES]

    def decode(self, units: np.ndarray) -> np.ndarray:
        dec = self.stream_decoder()
        return np.concatenate([dec.feed(units), dec.flush()])

    def stream_encoder(self) -> PhoneticStreamEncoder:
        return PhoneticStreamEncoder(self)

    def stream_decoder(self) -> PhoneticStreamDecoder:
        return PhoneticStreamDecoder(self)

    def unit_of(self, phone: int, pitch: int) -> int:
        """``phone`` = class index + 1 (0 = silence), ``pitch`` in 0..2."""
        return 0 if phone == 0 else 1 + (phone - 1) * PITCH_BINS + int(pitch)

    def phone_of(self, units: np.ndarray) -> np.ndarray:
        """Class index + 1 per unit (0 = silence)."""
        u = np.asarray(units, np.int64)
        return np.where(u == 0, 0, (u - 1) // PITCH_BINS + 1)

    def config(self) -> dict:
        return {**self.info, "kind": KIND, "layout": LAYOUT, "sample_rate_hz": SAMPLE_RATE_HZ,
                "hop_samples": UNIT_SAMPLES, "frame_rate_hz": self.frame_rate_hz, "num_units": self.num_units,
                "silence_unit": 0, "weights": "weights.npz"}

    def save(self, directory: str | Path) -> Path:
        directory = write_descriptor(directory, self.config())
        np.savez(directory / "weights.npz", **self.weights)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> PhoneticTokenizer:
        info = read_descriptor(directory)
        if info["kind"] != KIND:
            raise SpeechTokenizerError(f"{directory} holds a '{info['kind']}' tokenizer, not {KIND}")
        if info.get("layout") != LAYOUT:
            raise SpeechTokenizerError(
                f"{directory} was built for phonetic layout {info.get('layout')}, this code reads layout "
                f"{LAYOUT}: rebuild it with `make units` (or `python -m data_prep.build_units --out DIR`)")
        path = Path(directory) / info.get("weights", "weights.npz")
        if not path.is_file():
            raise SpeechTokenizerError(f"{path} missing: the tokenizer folder is incomplete; rebuild it with "
                                       "`make units`")
        with np.load(path, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
        tok = cls(weights, info)
        if tok.num_units != info.get("num_units"):
            raise SpeechTokenizerError(f"{directory}: {len(tok.phones)} phones give {tok.num_units} units but the "
                                       f"json says num_units={info.get('num_units')}; rebuild with `make units`")
        return tok


class PhoneticStreamEncoder:
    """Causal streaming encoder; a unit is final ``lookahead_frames`` after its last frame.

    ``feed`` returns the units now final; ``flush`` pads the end with silence for the look-ahead
    and returns the rest (the trailing partial unit is dropped, as ``encode`` does)."""

    def __init__(self, tok: PhoneticTokenizer):
        self.tok = tok
        self._buf = np.zeros(WIN - HOP, np.float64)    # left context of the next frame
        self._state = tok.rec.state()
        self._pending: list[np.ndarray] = []           # rec outputs not yet assigned (frames)
        self._f = {"logp": [], "lf0": [], "voiced": [], "db": []}
        self._frames_out = 0                           # frames whose phone log-probs we have
        self._lf0_sum = tok.f0_prior_frames * np.log(tok.f0_prior_hz)
        self._lf0_n = tok.f0_prior_frames
        self._rel: list[float] = []                    # per analysed frame: rel log-F0 or nan
        self._skip = tok.lookahead_frames              # first outputs belong to frames before 0
        self.frames = 0                                # units emitted
        self._flushed = False

    def _block(self, fr: np.ndarray) -> None:
        """Analyse and recognise exactly FRAMES_PER_UNIT frames."""
        t = self.tok
        a = t.frontend.analyse(fr)
        x = (a["logmel"] - t.feat_mu) / t.feat_sd
        logits = t.rec.step(x, self._state)
        logits = logits - logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        v = voiced(a["per"], a["db"])
        for k in range(len(fr)):
            if v[k]:
                self._rel.append(float(a["lf0"][k] - self._lf0_sum / self._lf0_n))
                self._lf0_sum += a["lf0"][k]
                self._lf0_n += 1
            else:
                self._rel.append(float("nan"))
        self._f["db"].extend(a["db"].tolist())
        for k in range(len(fr)):
            if self._skip:
                self._skip -= 1
                continue
            self._f["logp"].append(logp[k])

    def _assign(self) -> np.ndarray:
        t, n = self.tok, FRAMES_PER_UNIT
        out = []
        while len(self._f["logp"]) >= n and len(self._rel) >= n:
            logp = np.sum(self._f["logp"][:n], 0)
            rel = np.array(self._rel[:n])
            db = np.array(self._f["db"][:n])
            del self._f["logp"][:n], self._rel[:n], self._f["db"][:n]
            phone = int(np.argmax(logp))
            own_db = 10 * np.log10(np.mean(10 ** (db / 10)))
            if phone == 0 or own_db < t.silence_dbfs:
                out.append(0)
                continue
            r = rel[~np.isnan(rel)]
            m = float(r.mean()) if r.size else 0.0
            pitch = 0 if m < -t.pitch_bin else 2 if m > t.pitch_bin else 1
            out.append(t.unit_of(phone, pitch))
        self.frames += len(out)
        return np.asarray(out, np.int64)

    def feed(self, wave_chunk: np.ndarray) -> np.ndarray:
        if self._flushed:
            raise SpeechTokenizerError("stream encoder already flushed; create a new one")
        chunk = check_wave(wave_chunk, name="wave_chunk").astype(np.float64)
        self._buf = np.concatenate([self._buf, chunk])
        need = WIN - HOP + UNIT_SAMPLES
        while self._buf.size >= need:
            fr = self.tok.frontend.frames(self._buf[:need])
            self._block(fr)
            self._buf = self._buf[UNIT_SAMPLES:]
        return self._assign()

    def flush(self) -> np.ndarray:
        """Pad with silence so the look-ahead frames exist; returns the units that completes."""
        if self._flushed:
            return np.zeros(0, np.int64)
        self._flushed = True
        # the units whose frames were all analysed but whose look-ahead was not
        pending_frames = len(self._rel)
        pad_units = -(-self.tok.lookahead_frames // FRAMES_PER_UNIT)
        zeros = np.zeros(WIN - HOP + UNIT_SAMPLES, np.float64)
        for _ in range(pad_units):
            self._buf = np.concatenate([self._buf, zeros[:UNIT_SAMPLES]])
            need = WIN - HOP + UNIT_SAMPLES
            fr = self.tok.frontend.frames(self._buf[:need])
            self._block(fr)
            self._buf = self._buf[UNIT_SAMPLES:]
        keep = pending_frames // FRAMES_PER_UNIT
        units = self._assign()
        return units[:keep]


class PhoneticStreamDecoder:
    """Units -> audio in the target voice. ``feed`` returns what no later unit can change
    (all but the last ``decoder_lookahead`` units, minus the last 10 ms); ``flush`` the rest."""

    def __init__(self, tok: PhoneticTokenizer):
        self.tok = tok
        self._state = tok.dec.state()
        self._units: list[int] = []           # units fed, not yet rendered
        self._skip = tok.decoder_lookahead    # first outputs belong to units before 0
        self._rng = np.random.default_rng(tok.noise_seed)
        self._phase = 0.0
        self._prev_p = np.zeros(HOP)          # previous hop's pulses and noise
        self._prev_n = np.zeros(HOP)
        self._prev_f0 = 120.0
        self._acc = np.zeros(SYN_FFT + HOP)   # overlap-add accumulator from sample self._emitted
        self._emitted = 0
        self._frames_synth = 0
        self.n_units = 0
        self._flushed = False
        self._win = np.hanning(2 * HOP + 1)[:-1]
        k = np.arange(SYN_FFT // 2 + 1) * SAMPLE_RATE_HZ / SYN_FFT
        self._voiced_shape = 0.95 * (1 - np.clip((k - 4000.0) / 3000.0, 0, 1) * 0.7)   # noisier above 4 kHz
        self._fold = np.zeros(SYN_FFT)                  # real cepstrum -> minimum phase
        self._fold[0] = self._fold[SYN_FFT // 2] = 1.0
        self._fold[1:SYN_FFT // 2] = 2.0

    def _render_unit(self, unit: int, params: np.ndarray) -> None:
        """Synthesise the 4 frames of one unit (params: (4, N_CEP + 2) in feature units)."""
        fe = self.tok.frontend
        if unit == 0:
            mag = np.zeros((FRAMES_PER_UNIT, SYN_FFT // 2 + 1))
            f0 = np.full(FRAMES_PER_UNIT, self._prev_f0)
            vce = np.zeros(FRAMES_PER_UNIT)
        else:
            mag = fe.envelope(params[:, :N_CEP])
            f0 = np.clip(np.exp(params[:, N_CEP]), F0_MIN_HZ, F0_MAX_HZ)
            vce = (params[:, N_CEP + 1] > 0.5).astype(np.float64)
        n = FRAMES_PER_UNIT
        seg_p, seg_n = np.zeros((n, 2 * HOP)), np.zeros((n, 2 * HOP))
        for j in range(n):   # excitation, hop by hop: phase-continuous pulses + seeded noise
            inc = f0[j] / SAMPLE_RATE_HZ
            ph = self._phase + inc * np.arange(1, HOP + 1)
            pulses = np.zeros(HOP)
            pulses[np.flatnonzero(np.diff(np.floor(np.concatenate([[self._phase], ph]))) > 0)] = np.sqrt(1.0 / inc)
            self._phase = float(ph[-1] % 1.0)
            noise = self._rng.standard_normal(HOP)
            seg_p[j, :HOP], seg_p[j, HOP:] = self._prev_p, pulses
            seg_n[j, :HOP], seg_n[j, HOP:] = self._prev_n, noise
            self._prev_p, self._prev_n = pulses, noise
        self._prev_f0 = f0[-1]
        first = self._frames_synth
        self._frames_synth += n
        live = np.flatnonzero(mag.any(1))
        if not live.size:
            return
        mv = np.clip(vce[live, None] * self._voiced_shape, 0, 1)
        x = np.fft.rfft(seg_p[live] * self._win, SYN_FFT) * np.sqrt(mv) \
            + np.fft.rfft(seg_n[live] * self._win, SYN_FFT) * np.sqrt(1 - mv)
        c = np.fft.irfft(np.log(np.maximum(mag[live], 1e-8)), SYN_FFT, axis=1) * self._fold
        y = np.fft.irfft(x * np.exp(np.fft.rfft(c, SYN_FFT, axis=1)), SYN_FFT, axis=1)
        for j, row in zip(live, y):   # window centred on the frame's hop start
            self._add((first + j) * HOP - HOP - self._emitted, row)

    def _add(self, start: int, y: np.ndarray) -> None:
        lo = max(0, -start)
        end = start + len(y)
        if end > self._acc.size:   # grow geometrically: a long batch decode stays linear
            grown = np.zeros(max(end, 2 * self._acc.size))
            grown[: self._acc.size] = self._acc
            self._acc = grown
        self._acc[start + lo:end] += y[lo:]

    def _emit(self, upto: int) -> np.ndarray:
        n = max(0, upto - self._emitted)
        if self._acc.size < n:
            self._acc = np.concatenate([self._acc, np.zeros(n - self._acc.size)])
        out, self._acc = self._acc[:n], self._acc[n:]
        self._emitted += n
        return out.astype(np.float32)

    def _decode_block(self, ids: np.ndarray) -> None:
        t = self.tok
        for u in ids:
            y = t.dec.step(np.asarray([u], np.int64), self._state)[0].astype(np.float64)
            self._units.append(int(u))
            if self._skip:
                self._skip -= 1
                continue
            params = (y * t.tgt_sd + t.tgt_mu).reshape(FRAMES_PER_UNIT, N_CEP + 2)
            self._render_unit(self._units.pop(0), params)

    def feed(self, units: np.ndarray) -> np.ndarray:
        if self._flushed:
            raise SpeechTokenizerError("stream decoder already flushed; create a new one")
        units = check_units(units, self.tok.num_units)
        self.n_units += units.size
        self._decode_block(units)
        # samples before the start of the last synthesised frame's window are final
        return self._emit(max(0, (self._frames_synth - 1) * HOP))

    def flush(self) -> np.ndarray:
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        pad = min(self.tok.decoder_lookahead, self.n_units)
        if pad:
            self._decode_block(np.zeros(pad, np.int64))
            del self._units[:]
        total = self.n_units * UNIT_SAMPLES
        out = self._emit(total)
        return out


def units_from_labels(tok_or_phones, phone_ids_per_frame: np.ndarray, rel_lf0_per_frame: np.ndarray,
                      pitch_bin: float = 0.1) -> np.ndarray:
    """Ground-truth units from frame labels (phone id + 1, 0 = pause) and relative log-F0 (nan =
    unvoiced), 4 frames per unit: majority phone, mean pitch. For training and tests."""
    n = len(phone_ids_per_frame) // FRAMES_PER_UNIT
    ph = np.asarray(phone_ids_per_frame[: n * FRAMES_PER_UNIT]).reshape(n, FRAMES_PER_UNIT)
    rel = np.asarray(rel_lf0_per_frame[: n * FRAMES_PER_UNIT], np.float64).reshape(n, FRAMES_PER_UNIT)
    out = np.zeros(n, np.int64)
    for i in range(n):
        p = int(np.bincount(ph[i]).argmax())
        if p == 0:
            continue
        r = rel[i][~np.isnan(rel[i])]
        m = float(r.mean()) if r.size else 0.0
        out[i] = 1 + (p - 1) * PITCH_BINS + (0 if m < -pitch_bin else 2 if m > pitch_bin else 1)
    return out
