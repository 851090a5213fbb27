"""Built-in speech tokenizer: causal log-mel frames at 25 Hz -> k-means units -> audio.

Encoding
    Frame ``i`` covers the unit's own samples ``[i*hop, (i+1)*hop)``; its log-mel feature is
    computed from the ``n_fft`` samples *ending* at ``(i+1)*hop`` (zeros before the start),
    so the encoder is causal: a unit is known as soon as its 40 ms have arrived and the
    streaming encoder equals ``encode(whole)`` exactly, for any chunking.
    ``encode`` returns ``len(wave) // hop`` units (trailing partial frame dropped).
    Unit 0 (``silence_unit``) is reserved: every frame whose own samples have an RMS below
    ``silence_dbfs`` maps to it, and it decodes to exact zeros. Units ``1..K-1`` are
    MiniBatchKMeans centroids of the non-silent frames, sorted by loudness (unit 1 quietest).

Decoding (no Griffin-Lim loop, no per-call mel inversion)
    At fit/load time each centroid's mel power is inverted once to a linear magnitude
    spectrum (non-negative least squares by multiplicative updates, vectorised over all
    units). Decoding is then a table lookup: magnitudes are linearly interpolated between
    unit centres onto a 128-sample sub-hop grid (5 sub-frames per unit) and given a
    nearly *consistent* phase ``phi_k(j) = phi0_k + 2*pi*k*j*subhop/n_fft + w_k(j)``
    (bin-centre running phase, ``phi0`` fixed random, ``w`` a slow seeded random walk of
    ``phase_jitter_rad`` per sub-frame that stops the carrier from repeating every n_fft
    samples), so overlapping frames add coherently; inverse FFT + Hann overlap-add. The streaming decoder is the only implementation (``decode`` =
    feed + flush), so batch and streaming output are identical. Latency: ~1.3 units.
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

KIND = "mel_kmeans"
_LOG_EPS = 1e-8          # mel power floor inside the log (~ -80 dB)
_SUBFRAMES = 5           # synthesis sub-frames per unit (sub-hop = hop / 5 = 128 samples)


def mel_basis(sample_rate_hz: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filterbank (n_mels, n_fft//2+1), float64 (librosa's, computed once)."""
    import librosa
    return librosa.filters.mel(sr=sample_rate_hz, n_fft=n_fft, n_mels=n_mels,
                               dtype=np.float64)


def invert_mel_power(mel_power: np.ndarray, basis: np.ndarray, iters: int = 60) -> np.ndarray:
    """Non-negative linear power spectra P >= 0 with basis @ P ~= mel_power, for rows at once.

    Starts from the band-average spread of each mel value over its filter, then runs
    multiplicative NNLS updates (Lee-Seung), which keep P >= 0. ``mel_power``: (K, n_mels).
    """
    b = basis                                           # (M, F)
    band_density = mel_power / np.maximum(b.sum(1), 1e-12)       # (K, M)
    p = band_density @ b / np.maximum(b.sum(0), 1e-12)           # (K, F)
    p = np.maximum(p, 1e-12)
    btb = b.T @ b                                        # (F, F)
    num = mel_power @ b                                  # (K, F) = (B^T y)^T
    for _ in range(iters):
        p *= num / np.maximum(p @ btb, 1e-30)
        np.maximum(p, 1e-30, out=p)   # keep away from denormals (slow) and exact zeros
    return p


class MelKMeansTokenizer:
    """Log-mel k-means units at 25 Hz with a table-lookup overlap-add decoder.

    Build with :meth:`fit` (data prep) or :meth:`load`; ``num_units`` includes the
    reserved silence unit 0.
    """

    kind = KIND

    def __init__(self, centroids: np.ndarray, *, sample_rate_hz: int = SAMPLE_RATE_HZ,
                 hop_samples: int = 640, n_fft: int = 1024, n_mels: int = 80,
                 silence_dbfs: float = -60.0, phase_seed: int = 0,
                 phase_jitter_rad: float = 0.7):
        centroids = np.asarray(centroids, dtype=np.float64)
        if centroids.ndim != 2 or centroids.shape[1] != n_mels or centroids.shape[0] < 1:
            raise SpeechTokenizerError(
                f"centroids must be (num_units-1, {n_mels}), got {centroids.shape}")
        if hop_samples % _SUBFRAMES or n_fft % (hop_samples // _SUBFRAMES) or n_fft < hop_samples:
            raise SpeechTokenizerError(
                f"hop_samples={hop_samples} must be divisible by {_SUBFRAMES} and n_fft={n_fft} "
                "a multiple of hop/5, >= hop")
        self.sample_rate = int(sample_rate_hz)
        self.hop_samples, self.n_fft, self.n_mels = int(hop_samples), int(n_fft), int(n_mels)
        self.frame_rate_hz = self.sample_rate / self.hop_samples
        self.silence_dbfs, self.phase_seed = float(silence_dbfs), int(phase_seed)
        self.phase_jitter_rad = float(phase_jitter_rad)
        self.centroids = centroids                     # (K-1, n_mels) log mel power
        self.num_units = centroids.shape[0] + 1
        self.silence_unit = 0
        self._basis = mel_basis(self.sample_rate, n_fft, n_mels)      # (M, F)
        self._window = np.hanning(n_fft + 1)[:-1]                     # periodic Hann
        self._c_sq = (centroids ** 2).sum(1)
        self._unit_mags: np.ndarray | None = None
        # Synthesis constants: sub-hop, OLA gain and the phase table, a pure function of the
        # sub-frame index j (so any chunking gives the same audio). Bin-centre running phase
        # alone repeats every n_fft samples (a 16 Hz "frozen noise" buzz); a small random walk
        # per bin (a closed Brownian bridge, period 1024 sub-frames = 8 s) breaks that while
        # overlapping frames stay nearly coherent.
        self.sub_hop = self.hop_samples // _SUBFRAMES
        period = self.n_fft // self.sub_hop
        if self.phase_jitter_rad > 0:
            period *= 128
        self._ola_gain = float((self._window ** 2).sum() / self.sub_hop)
        rng = np.random.default_rng(phase_seed)
        n_bins = self.n_fft // 2 + 1
        phi0 = rng.uniform(-np.pi, np.pi, n_bins)
        k = np.arange(n_bins)
        j = np.arange(period)[:, None]
        walk = np.zeros((period, n_bins))
        if self.phase_jitter_rad > 0:
            walk = np.cumsum(rng.normal(0, self.phase_jitter_rad, (period, n_bins)), 0)
            walk -= j / period * walk[-1]                  # bridge: walk[period] == walk[0] == 0
        self._phase = np.exp(1j * (phi0[None] + walk + 2 * np.pi * k[None] * j * self.sub_hop
                                   / n_fft)).astype(np.complex64)
        if self.phase_jitter_rad > 0:   # frames add less coherently: restore the level
            coherent = np.exp(1j * (phi0[None] + 2 * np.pi * k[None] * j[:64] * self.sub_hop / n_fft))
            self._ola_gain *= self._ola_rms(self._phase[:64]) / self._ola_rms(coherent)

    def _ola_rms(self, phase_rows: np.ndarray) -> float:
        """RMS of the steady middle of an overlap-add of flat-magnitude frames (calibration)."""
        frames = np.fft.irfft(phase_rows, n=self.n_fft, axis=1) * self._window
        out = np.zeros(len(frames) * self.sub_hop + self.n_fft)
        for i, fr in enumerate(frames):
            out[i * self.sub_hop: i * self.sub_hop + self.n_fft] += fr
        mid = out[self.n_fft: len(frames) * self.sub_hop]
        return float(np.sqrt((mid ** 2).mean()))

    @property
    def unit_magnitudes(self) -> np.ndarray:
        """(num_units, n_fft//2+1) linear magnitude per unit (row 0 = silence = zeros).

        Computed once, on first use, by inverting each centroid's mel power (NNLS)."""
        if self._unit_mags is None:
            mel_power = np.maximum(np.exp(self.centroids) - _LOG_EPS, 0.0)
            mags = np.sqrt(invert_mel_power(mel_power, self._basis))
            self._unit_mags = np.vstack([np.zeros((1, mags.shape[1])), mags])
        return self._unit_mags

    # ------------------------------------------------------------------ features
    def features(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log-mel (n, n_mels) float64, silent (n,) bool) for the ``len // hop`` frames."""
        wave = check_wave(wave)
        return self._features(np.concatenate([np.zeros(self.n_fft - self.hop_samples,
                                                        np.float32), wave]))

    def _features(self, padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``padded`` = (n_fft - hop) samples of left context + the frames' own samples."""
        hop, ctx = self.hop_samples, self.n_fft - self.hop_samples
        n = (padded.size - ctx) // hop
        if n <= 0:
            return np.zeros((0, self.n_mels)), np.zeros(0, bool)
        x = padded[: ctx + n * hop].astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[::hop][:n]
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        logmel = np.log(power @ self._basis.T + _LOG_EPS)
        own = x[ctx:].reshape(n, hop)
        rms_db = 10 * np.log10((own ** 2).mean(1) + 1e-20)
        return logmel, rms_db < self.silence_dbfs

    def _assign(self, logmel: np.ndarray, silent: np.ndarray) -> np.ndarray:
        if not len(logmel):
            return np.zeros(0, np.int64)
        d = self._c_sq[None, :] - 2.0 * (logmel @ self.centroids.T)
        units = d.argmin(1).astype(np.int64) + 1
        units[silent] = self.silence_unit
        return units

    # ------------------------------------------------------------------ public API
    def encode(self, wave: np.ndarray) -> np.ndarray:
        """Units (int64, ``len(wave) // hop_samples`` of them); error if < one frame."""
        wave = check_wave(wave, min_samples=self.hop_samples)
        return self._assign(*self.features(wave))

    def decode(self, units: np.ndarray) -> np.ndarray:
        """Float32 audio of exactly ``len(units) * hop_samples`` samples."""
        dec = self.stream_decoder()
        a = dec.feed(units)
        return np.concatenate([a, dec.flush()])

    def stream_encoder(self) -> MelStreamEncoder:
        return MelStreamEncoder(self)

    def stream_decoder(self) -> MelStreamDecoder:
        return MelStreamDecoder(self)

    @classmethod
    def fit(cls, waves, num_units: int = 1024, seed: int = 0, max_frames: int = 100_000,
            *, silence_dbfs: float = -60.0, batch_size: int = 4096,
            max_iter: int = 100) -> MelKMeansTokenizer:
        """Fit ``num_units - 1`` k-means centroids on up to ``max_frames`` non-silent frames.

        ``waves``: iterable of 16 kHz float32 1-D arrays. Frames are subsampled with
        ``np.random.default_rng(seed)``; the same waves + seed give bit-identical centroids on
        any machine: BLAS/OpenMP run single-threaded here because their reduction order
        (and so the centroids) otherwise depends on the thread count.
        """
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            return cls._fit(waves, num_units, seed, max_frames, silence_dbfs, batch_size, max_iter)

    @classmethod
    def _fit(cls, waves, num_units, seed, max_frames, silence_dbfs, batch_size, max_iter):
        from sklearn.cluster import MiniBatchKMeans
        if num_units < 2:
            raise SpeechTokenizerError(f"num_units must be >= 2 (unit 0 is silence), got {num_units}")
        proto = cls(np.zeros((1, 80)), silence_dbfs=silence_dbfs)
        feats = []
        for i, w in enumerate(waves):
            logmel, silent = proto.features(check_wave(w, name=f"waves[{i}]"))
            feats.append(logmel[~silent])
        x = np.concatenate(feats) if feats else np.zeros((0, proto.n_mels))
        k = num_units - 1
        if len(x) < k:
            raise SpeechTokenizerError(
                f"fit needs at least num_units-1={k} non-silent frames, got {len(x)} "
                f"({len(x) / proto.frame_rate_hz:.1f} s of speech); give more audio or "
                "lower num_units")
        rng = np.random.default_rng(seed)
        if len(x) > max_frames:
            x = x[np.sort(rng.choice(len(x), size=max_frames, replace=False))]
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size,
                             n_init=1, max_iter=max_iter, max_no_improvement=20,
                             reassignment_ratio=0.01)
        km.fit(x.astype(np.float64))
        centroids = km.cluster_centers_
        centroids = centroids[np.argsort(centroids.mean(1), kind="stable")]
        return cls(centroids, silence_dbfs=silence_dbfs)

    def config(self) -> dict:
        return {"kind": KIND, "sample_rate_hz": self.sample_rate, "hop_samples": self.hop_samples,
                "n_fft": self.n_fft, "n_mels": self.n_mels, "num_units": self.num_units,
                "silence_unit": self.silence_unit, "silence_dbfs": self.silence_dbfs,
                "phase_seed": self.phase_seed, "phase_jitter_rad": self.phase_jitter_rad,
                "frame_rate_hz": self.frame_rate_hz,
                "centroids": "centroids.npy"}

    def save(self, directory: str | Path) -> Path:
        """Write ``speech_tokenizer.json`` + ``centroids.npy`` into ``directory``."""
        directory = write_descriptor(directory, self.config())
        np.save(directory / "centroids.npy", self.centroids)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MelKMeansTokenizer:
        info = read_descriptor(directory)
        if info["kind"] != KIND:
            raise SpeechTokenizerError(f"{directory} holds a '{info['kind']}' tokenizer, not {KIND}")
        path = Path(directory) / info.get("centroids", "centroids.npy")
        if not path.is_file():
            raise SpeechTokenizerError(f"{path} missing: the tokenizer folder is incomplete")
        tok = cls(np.load(path, allow_pickle=False), sample_rate_hz=info["sample_rate_hz"],
                  hop_samples=info["hop_samples"], n_fft=info["n_fft"], n_mels=info["n_mels"],
                  silence_dbfs=info["silence_dbfs"], phase_seed=info["phase_seed"],
                  phase_jitter_rad=info.get("phase_jitter_rad", 0.0))
        if tok.num_units != info["num_units"]:
            raise SpeechTokenizerError(
                f"{path} has {tok.num_units - 1} centroids but the json says num_units="
                f"{info['num_units']}")
        return tok


class MelStreamEncoder:
    """Causal streaming encoder: ``feed(chunk)`` returns the units of completed frames.

    Concatenated outputs equal ``tok.encode(whole)`` for any chunking (frames are causal).
    """

    def __init__(self, tok: MelKMeansTokenizer):
        self.tok = tok
        self._buf = np.zeros(tok.n_fft - tok.hop_samples, np.float32)   # left context
        self.frames = 0

    def feed(self, wave_chunk: np.ndarray) -> np.ndarray:
        chunk = check_wave(wave_chunk, name="wave_chunk")
        self._buf = np.concatenate([self._buf, chunk])
        units = self.tok._assign(*self.tok._features(self._buf))
        keep = self._buf.size - units.size * self.tok.hop_samples
        self._buf = self._buf[self._buf.size - keep:] if units.size else self._buf
        self.frames += units.size
        return units

    def flush(self) -> np.ndarray:
        """Nothing pending: a trailing partial frame is dropped, exactly as ``encode`` does."""
        return np.zeros(0, np.int64)


class MelStreamDecoder:
    """Incremental overlap-add decoder; output is identical to ``tok.decode(all units)``.

    ``feed(units)`` returns the audio that no later unit can change (it lags the input by
    about 1.3 units); ``flush()`` returns the rest so the total is ``n_units * hop``.
    """

    def __init__(self, tok: MelKMeansTokenizer):
        self.tok = tok
        self._mags: list[np.ndarray] = []   # magnitudes of units still needed (<= 2 at rest)
        self._first_unit = 0                # global index of self._mags[0]
        self.n_units = 0
        self._next_sub = -(tok.n_fft // 2) // tok.sub_hop  # first sub-frame touching sample 0
        self._acc = np.zeros(0)             # OLA accumulator starting at sample self._emitted
        self._emitted = 0
        self._flushed = False

    def _sub_start(self, j: int) -> int:
        t = self.tok
        return j * t.sub_hop + t.sub_hop // 2 - t.n_fft // 2

    def _synth(self, last_sub: int, last_unit: int) -> None:
        """Add sub-frames ``next_sub..last_sub`` (magnitudes clamp at ``last_unit``)."""
        t = self.tok
        js = np.arange(self._next_sub, last_sub + 1)
        if not js.size:
            return
        # Fractional unit position of each sub-frame centre: (j - 2) / 5 for 5 sub-frames.
        pos = np.clip((js - _SUBFRAMES // 2) / _SUBFRAMES, 0, last_unit)
        i0 = np.floor(pos).astype(int)
        frac = (pos - i0)[:, None]
        i1 = np.minimum(i0 + 1, last_unit)
        mags = np.stack(self._mags)
        off = self._first_unit
        m = (1 - frac) * mags[i0 - off] + frac * mags[i1 - off]
        frames = np.fft.irfft(m * t._phase[js % len(t._phase)], n=t.n_fft, axis=1)
        frames *= t._window / t._ola_gain
        end = self._sub_start(js[-1]) + t.n_fft
        need = end - self._emitted
        if self._acc.size < need:
            self._acc = np.concatenate([self._acc, np.zeros(need - self._acc.size)])
        for j, fr in zip(js, frames):
            s = self._sub_start(j) - self._emitted
            lo = max(0, -s)                   # parts before the emitted point are before 0
            self._acc[s + lo: s + t.n_fft] += fr[lo:]
        self._next_sub = int(js[-1]) + 1

    def _emit(self, upto: int) -> np.ndarray:
        n = max(0, upto - self._emitted)
        if self._acc.size < n:
            self._acc = np.concatenate([self._acc, np.zeros(n - self._acc.size)])
        out, self._acc = self._acc[:n], self._acc[n:]
        self._emitted += n
        return out.astype(np.float32)

    def _drop_old(self) -> None:
        keep_from = max(0, (self._next_sub - _SUBFRAMES // 2) // _SUBFRAMES)
        drop = min(keep_from - self._first_unit, len(self._mags) - 1)
        if drop > 0:
            del self._mags[:drop]
            self._first_unit += drop

    def feed(self, units: np.ndarray) -> np.ndarray:
        if self._flushed:
            raise SpeechTokenizerError("stream decoder already flushed; create a new one")
        units = check_units(units, self.tok.num_units)
        if not units.size:
            return np.zeros(0, np.float32)
        self._mags.extend(self.tok.unit_magnitudes[units])
        self.n_units += units.size
        last = self.n_units - 1
        # Sub-frames whose centre lies at or before the last unit's centre are final.
        self._synth(_SUBFRAMES * last + _SUBFRAMES // 2, last)
        self._drop_old()
        return self._emit(min(self._sub_start(self._next_sub), self.n_units * self.tok.hop_samples))

    def flush(self) -> np.ndarray:
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        total = self.n_units * self.tok.hop_samples
        if self.n_units:
            t = self.tok
            last_sub = (total + t.n_fft // 2 - t.sub_hop // 2 - 1) // t.sub_hop  # start < total
            self._synth(last_sub, self.n_units - 1)
        return self._emit(total)
