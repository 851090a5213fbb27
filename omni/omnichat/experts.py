"""Expert audio encoders behind one interface: ``features(wave) -> (frames, dim)`` tensor.

Every expert takes a mono float32 wave at 16 kHz and returns frames at its own known
``frame_rate_hz`` (frame i covers ``[i / rate, (i + 1) / rate)`` s; ``frames = ceil(seconds *
rate)``). Experts are frozen by default (``requires_grad=False``, eval mode, no_grad).

Embedded defaults (CPU, no downloads; built from configs with a fixed seed):

* ``content``: tiny ``WhisperEncoder`` (transformers) over 80-bin log-mels, 50 Hz, 4 s chunks.
  Real (``omnichat.content_expert``): ``whisper_base`` = the Whisper base encoder installed from
  PyPI (CTranslate2 int8, :class:`WhisperBaseContent`; its features are precomputed at data prep,
  see :mod:`omni.omnichat.precompute`), or ``hf_path`` = a local transformers Whisper folder
  (``omnichat.content_path``), its encoder and feature extractor.
* ``para``: prosody encoder, 50 Hz, 8 dims: log-F0 (YIN), voicing, energy (dB), their
  deltas, zero-crossing rate, spectral flatness. No parameters. Real: a local data2vec-audio
  folder (emotion2vec-style, ``omnichat.para_path``), 50 Hz.
* ``events``: tiny AST-like encoder (transformers ``ASTModel``) over 64-bin log-mels,
  patches every 10 mel frames: 10 Hz. Real: a local AST folder (``omnichat.events_path``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE_HZ = 16000
CHUNK_S = 4.0
"""Tiny experts encode fixed 4 s chunks (Whisper/AST need a fixed input length)."""


def _as_wave(wave) -> np.ndarray:
    w = np.asarray(wave, dtype=np.float32)
    if w.ndim != 1:
        raise ValueError(f"expert input must be a mono 1-D wave at 16 kHz, got shape {w.shape}")
    if w.size < SAMPLE_RATE_HZ // 100:
        raise ValueError(f"wave too short ({w.size} samples): experts need at least 10 ms at 16 kHz")
    if not np.isfinite(w).all():
        raise ValueError("wave holds NaN or inf samples")
    return w


def num_frames(num_samples: int, frame_rate_hz: float) -> int:
    return max(1, math.ceil(num_samples * frame_rate_hz / SAMPLE_RATE_HZ - 1e-9))


def _chunks(w: np.ndarray, chunk_s: float = CHUNK_S):
    n = int(chunk_s * SAMPLE_RATE_HZ)
    for a in range(0, len(w), n):
        yield w[a:a + n]


class Expert(torch.nn.Module):
    """Base: subclasses set ``name``, ``frame_rate_hz``, ``dim`` and implement ``_encode``."""
    name = "expert"
    frame_rate_hz = 50.0
    dim = 0

    def freeze(self) -> "Expert":
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        self.frozen = True
        return self

    def features(self, wave) -> torch.Tensor:
        """(frames, dim) float32 at ``frame_rate_hz``; gradients only when not frozen."""
        w = _as_wave(wave)
        with torch.set_grad_enabled(not getattr(self, "frozen", False) and torch.is_grad_enabled()):
            out = self._encode(w)
        n = num_frames(len(w), self.frame_rate_hz)
        if out.shape[0] < n:  # edge frames: repeat the last
            out = torch.cat([out, out[-1:].expand(n - out.shape[0], -1)], 0)
        return out[:n].float()

    def _encode(self, w: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- log-mel
class LogMel(torch.nn.Module):
    """Log-mel at 100 Hz (hop 160, window 400); mel filters from librosa, fixed."""

    def __init__(self, n_mels: int):
        super().__init__()
        import librosa
        self.register_buffer("fb", torch.tensor(librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=400, n_mels=n_mels),
                                                dtype=torch.float32), persistent=False)
        self.register_buffer("win", torch.hann_window(400), persistent=False)

    def forward(self, w: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(w))
        if x.numel() <= 200:  # stft's centred reflect padding needs > n_fft/2 samples (a short last chunk)
            x = torch.nn.functional.pad(x, (0, 401 - x.numel()))
        spec = torch.stft(x, 400, 160, window=self.win, return_complex=True).abs() ** 2
        mel = torch.log10(torch.clamp(self.fb @ spec, min=1e-10))
        mel = torch.maximum(mel, mel.max() - 8.0)
        return ((mel + 4.0) / 4.0)[:, :-1]  # (n_mels, frames at 100 Hz), Whisper's scaling


# --------------------------------------------------------------------------- content
class TinyWhisperContent(Expert):
    name, frame_rate_hz = "content", 50.0

    def __init__(self, d_model: int = 64, layers: int = 2, heads: int = 2, seed: int = 0):
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
        cfg = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=d_model, encoder_layers=layers,
                            encoder_attention_heads=heads, encoder_ffn_dim=2 * d_model, decoder_layers=1,
                            decoder_attention_heads=heads, decoder_ffn_dim=2 * d_model,
                            max_source_positions=int(CHUNK_S * 50), pad_token_id=0, bos_token_id=1,
                            eos_token_id=2, decoder_start_token_id=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = WhisperEncoder(cfg)
        self.mel = LogMel(80)
        self.dim = d_model

    def _encode(self, w):
        outs = []
        for c in _chunks(w):
            mel = self.mel(c)
            n_out = num_frames(len(c), self.frame_rate_hz)
            full = torch.nn.functional.pad(mel, (0, int(CHUNK_S * 100) - mel.shape[1]), value=float(mel.min()))
            h = self.encoder(full[None]).last_hidden_state[0]
            outs.append(h[:n_out])
        return torch.cat(outs, 0)


class PretrainedWhisperContent(Expert):
    """Encoder of a local Whisper folder (``WhisperModel``/``WhisperForConditionalGeneration``)."""
    name, frame_rate_hz = "content", 50.0

    def __init__(self, path: str):
        super().__init__()
        from transformers import WhisperFeatureExtractor, WhisperModel
        _need_dir(path, "omnichat.content_path")
        self.fe = WhisperFeatureExtractor.from_pretrained(path, local_files_only=True)
        self.encoder = WhisperModel.from_pretrained(path, local_files_only=True, use_safetensors=True).encoder
        self.dim = self.encoder.config.d_model

    def _encode(self, w):
        outs = []
        for c in _chunks(w, 30.0):
            feats = self.fe(c, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt").input_features
            outs.append(self.encoder(feats).last_hidden_state[0][:num_frames(len(c), 50.0)])
        return torch.cat(outs, 0)


class WhisperBaseContent(Expert):
    """Encoder of OpenAI's Whisper base (CTranslate2 build, int8 on CPU) from the PyPI packages that
    ``make models`` installs (:func:`omni.pretrained.whisper_base_dir`).

    Each 30 s window of the wave is padded with silence to 30 s, turned into Whisper's 80-bin
    log-mel (``faster_whisper`` ``FeatureExtractor``, as Whisper itself does) and encoded into
    1500 x 512 frames at 50 Hz; only the frames covering real audio are kept. No torch
    parameters: frozen by construction. The CTranslate2 model loads on the first encode (training
    from precomputed features never loads it); ``encode_calls`` counts the windows encoded."""
    name, frame_rate_hz, dim = "content", 50.0, 512
    WINDOW_S = 30.0
    FEATURE_ID = "whisper-base/ct2-int8/30s-window"
    """Identifies features this expert writes (stored next to precomputed features; a mismatch
    means they came from another expert and are not used)."""

    def __init__(self, model_dir: str | None = None, threads: int | None = None):
        super().__init__()
        from omni.pretrained import resolve_path, whisper_base_dir
        # fail fast (one line naming `make models`) when the packages are missing
        self.model_dir = Path(resolve_path(model_dir)) if model_dir else whisper_base_dir()
        if not (self.model_dir / "model.bin").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not a CTranslate2 Whisper folder (needs model.bin): "
                                    f"run `make models`")
        if threads is None:
            from omni.asr import default_threads
            threads = default_threads()
        self.threads = int(threads)
        self._model = None
        self._fe = None
        self.encode_calls = 0
        self.freeze()

    def _load(self):
        if self._model is None:
            try:
                import ctranslate2
                from faster_whisper.feature_extractor import FeatureExtractor
            except ImportError as e:
                from omni.pretrained import PretrainedMissing
                raise PretrainedMissing(f"the Whisper base content expert needs ctranslate2 and faster-whisper "
                                        f"({e.name} is missing): run `make models`") from e
            self._model = ctranslate2.models.Whisper(str(self.model_dir), device="cpu", compute_type="int8",
                                                     intra_threads=self.threads)
            self._fe = FeatureExtractor(feature_size=80)
        return self._model

    def log_mel(self, chunk: np.ndarray) -> np.ndarray:
        """(80, 3000) float32: the chunk padded with 30 s of silence, first 30 s of frames (Whisper's
        own padding; the log-mel floor then comes from the real audio)."""
        self._load()
        n = int(self.WINDOW_S * SAMPLE_RATE_HZ)
        mel = self._fe(np.asarray(chunk, np.float32), padding=n)[:, : n // 160]
        return np.ascontiguousarray(mel, dtype=np.float32)

    def _encode(self, w):
        import ctranslate2
        model = self._load()
        outs = []
        for c in _chunks(w, self.WINDOW_S):
            mel = self.log_mel(c)
            h = np.asarray(model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
            self.encode_calls += 1
            outs.append(torch.from_numpy(np.array(h[: num_frames(len(c), self.frame_rate_hz)], dtype=np.float32)))
        return torch.cat(outs, 0)


# ------------------------------------------------------------------------ paralinguistic
class ProsodyEncoder(Expert):
    """Pitch / energy / voicing features at 50 Hz (no parameters)."""
    name, frame_rate_hz, dim = "para", 50.0, 8
    HOP = 320

    def _encode(self, w):
        import librosa
        hop, n = self.HOP, num_frames(len(w), self.frame_rate_hz)
        x = np.pad(w, (0, max(0, 1024 - len(w))))
        f0 = librosa.yin(x, fmin=60, fmax=500, sr=SAMPLE_RATE_HZ, frame_length=1024, hop_length=hop)
        rms = librosa.feature.rms(y=x, frame_length=1024, hop_length=hop)[0]
        zcr = librosa.feature.zero_crossing_rate(x, frame_length=1024, hop_length=hop)[0]
        flat = librosa.feature.spectral_flatness(y=x, n_fft=1024, hop_length=hop)[0]
        m = min(len(f0), len(rms), len(zcr), len(flat))
        f0, rms, zcr, flat = f0[:m], rms[:m], zcr[:m], flat[:m]
        energy_db = 20 * np.log10(rms + 1e-5)
        voiced = ((energy_db > energy_db.max() - 35) & (zcr < 0.25) & (flat < 0.3)).astype(np.float32)
        logf0 = np.where(voiced > 0, np.log2(f0 / 150.0), 0.0)
        feats = np.stack([logf0, voiced, (energy_db + 40) / 20, np.gradient(logf0) if m > 1 else logf0 * 0,
                          np.gradient(energy_db) / 10 if m > 1 else energy_db * 0, zcr * 4, flat * 4,
                          np.full(m, voiced.mean())], 1).astype(np.float32)
        return torch.from_numpy(feats[:max(n, 1)])


class PretrainedData2VecPara(Expert):
    """emotion2vec-style: hidden states of a local data2vec-audio folder (50 Hz)."""
    name, frame_rate_hz = "para", 50.0

    def __init__(self, path: str):
        super().__init__()
        from transformers import Data2VecAudioModel
        _need_dir(path, "omnichat.para_path")
        self.model = Data2VecAudioModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        self.dim = self.model.config.hidden_size

    def _encode(self, w):
        x = torch.from_numpy((w - w.mean()) / (w.std() + 1e-7))[None]
        return self.model(x).last_hidden_state[0]


# ----------------------------------------------------------------------------- events
class TinyASTEvents(Expert):
    """AST over 64-bin log-mel chunks; the patch grid's time axis (stride 10 mel frames) is
    averaged over frequency: one frame per 0.1 s."""
    name, frame_rate_hz = "events", 10.0

    def __init__(self, hidden: int = 64, layers: int = 2, heads: int = 2, seed: int = 0, config=None):
        super().__init__()
        from transformers import ASTConfig, ASTModel
        cfg = config or ASTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=2 * hidden, num_mel_bins=64, max_length=int(CHUNK_S * 100) + 6,
                                  frequency_stride=16, time_stride=10, patch_size=16)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.ast = ASTModel(cfg)
        self.mel = LogMel(cfg.num_mel_bins)
        self.dim = cfg.hidden_size
        self._len = cfg.max_length

    def _encode(self, w):
        outs = []
        c_ = self.ast.config
        f_dim = (c_.num_mel_bins - c_.patch_size) // c_.frequency_stride + 1
        for c in _chunks(w):
            mel = self.mel(c).T  # (frames, mels)
            x = torch.nn.functional.pad(mel, (0, 0, 0, self._len - mel.shape[0]), value=float(mel.min()))
            h = self.ast(x[None]).last_hidden_state[0, 2:]  # drop cls + distillation tokens
            h = h.reshape(f_dim, -1, h.shape[-1]).mean(0)  # (time patches, dim)
            outs.append(h[:num_frames(len(c), self.frame_rate_hz)])
        return torch.cat(outs, 0)


class PretrainedASTEvents(TinyASTEvents):
    def __init__(self, path: str):
        from transformers import ASTModel
        _need_dir(path, "omnichat.events_path")
        model = ASTModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        torch.nn.Module.__init__(self)
        self.ast, self.mel = model, LogMel(model.config.num_mel_bins)
        self.dim, self._len = model.config.hidden_size, model.config.max_length
        self.frame_rate_hz = 100.0 / model.config.time_stride


def _need_dir(path: str, key: str) -> None:
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{key} {path!r} is not a local folder (nothing is downloaded; "
                                f"point it at saved weights or set it to null for the tiny default)")


def build_experts(oc, seed: int = 0) -> torch.nn.ModuleDict:
    """The experts named in ``oc.experts`` (an :class:`omni.config.OmniChatConfig`), in that order."""
    made = {}
    for i, name in enumerate(oc.experts):
        if name == "content":
            kind = oc.content_kind
            e = (WhisperBaseContent() if kind == "whisper_base" else
                 PretrainedWhisperContent(oc.content_path) if kind == "hf_path" else TinyWhisperContent(seed=seed + i))
        elif name == "para":
            e = PretrainedData2VecPara(oc.para_path) if oc.para_path else ProsodyEncoder()
        elif name == "events":
            e = PretrainedASTEvents(oc.events_path) if oc.events_path else TinyASTEvents(seed=seed + 10 + i)
        else:  # pragma: no cover - the config validates names
            raise ValueError(f"unknown expert {name!r}: choose content, para or events")
        made[name] = e.freeze() if oc.freeze_experts else e
    return torch.nn.ModuleDict(made)
