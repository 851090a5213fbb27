"""Adapters for real speech tokenizers loaded from a LOCAL path (nothing downloads).

* :class:`S3Tokenizer` - CosyVoice S3 tokens (package ``s3tokenizer``, optional extra):
  25 Hz, codebook 6561 (v2/v3) or 4096 (v1). **Encode only**: turning S3 tokens into audio
  needs CosyVoice's flow-matching model and HiFi-GAN vocoder, which omni does not ship, so
  ``decode`` raises :class:`NotImplementedError`. Loads an official ``.onnx`` file or a
  folder saved by :meth:`S3Tokenizer.save` (config + safetensors).
* :class:`MimiTokenizer` - ``transformers.MimiModel`` from a local folder (encode and decode).
  The first ``num_codebooks`` codebooks are flattened frame-major into one unit stream:
  unit = ``q * codebook_size + code`` for codebook ``q``, so ``num_units = N * codebook_size``
  and ``frame_rate_hz = model frame rate * N``. With N > 1 a silent *frame* is
  ``silence_units`` (N units); ``silence_unit`` is its first. Audio is resampled (soxr)
  between 16 kHz and the model's rate.

Both adapters follow the protocol in :mod:`omni.speech.base`: ``encode`` returns one unit per
``hop_samples`` of whole model frames (model output is trimmed, or padded with the silence
unit, to exactly that count) and ``silence_unit`` is the unit the model gives to digital
silence (measured on 1 s of zeros at load time). Their streaming encoder/decoder work on
independent windows (see :class:`~omni.speech.base.WindowedStreamEncoder`), so streamed units
can differ from ``encode(whole)`` near window edges.
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from pathlib import Path

import numpy as np

from omni.speech.base import (
    SAMPLE_RATE_HZ,
    SpeechTokenizerError,
    WindowedStreamDecoder,
    WindowedStreamEncoder,
    check_units,
    check_wave,
    read_descriptor,
    write_descriptor,
)


def _fit_length(units: np.ndarray, n: int, pad_unit: int) -> np.ndarray:
    units = units[:n]
    if units.size < n:
        units = np.concatenate([units, np.full(n - units.size, pad_unit, units.dtype)])
    return units.astype(np.int64)


def _mode(units: np.ndarray) -> int:
    vals, counts = np.unique(units, return_counts=True)
    return int(vals[counts.argmax()])


def _require_path(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise SpeechTokenizerError(f"{what} path {path} does not exist (nothing is downloaded; "
                                   "point tokenizer.speech_path at a local copy)")
    return path


# ------------------------------------------------------------------------------- S3
def import_s3tokenizer():
    """Import ``s3tokenizer``; its module-level ``import torchaudio`` gets a stub if needed.

    The PyPI torchaudio build fails to import on CPU-only machines and s3tokenizer only uses it
    in ``load_audio`` (file paths), which omni never calls. The stub is removed from
    ``sys.modules`` again right after the import so no other library sees it.
    """
    try:
        return importlib.import_module("s3tokenizer")
    except ModuleNotFoundError as e:
        if e.name != "torchaudio":
            raise SpeechTokenizerError(
                "the S3 tokenizer needs the optional package 's3tokenizer': "
                "uv pip install s3tokenizer (then uninstall torchaudio if it fails to import)") from e
    except OSError:
        pass  # a broken torchaudio install (libc10_cuda.so): fall back to the stub
    for name in [m for m in sys.modules if m.split(".")[0] in ("s3tokenizer", "torchaudio")]:
        del sys.modules[name]
    stub = types.ModuleType("torchaudio")

    def _missing(*_a, **_k):
        raise SpeechTokenizerError("torchaudio is unavailable: pass audio arrays, not file paths")
    stub.load = _missing
    stub.transforms = types.SimpleNamespace(Resample=_missing)
    sys.modules["torchaudio"] = stub
    try:
        return importlib.import_module("s3tokenizer")
    finally:
        if sys.modules.get("torchaudio") is stub:
            del sys.modules["torchaudio"]


class S3Tokenizer:
    """CosyVoice S3 speech tokens at 25 Hz (encode only), from a local checkpoint."""

    kind = "s3"
    sample_rate = SAMPLE_RATE_HZ
    hop_samples = 640
    frame_rate_hz = 25.0

    def __init__(self, model, model_name: str):
        import torch
        self.model, self.model_name = model.eval(), model_name
        self.num_units = int(model.config.n_codebook_size)
        self.n_mels = int(model.config.n_mels)
        if "25hz" not in model_name:
            raise SpeechTokenizerError(f"S3 model {model_name!r} is not a 25 Hz model; use a "
                                       "'speech_tokenizer_v2_25hz'/'..._v3_25hz' checkpoint")
        self._torch = torch
        self.silence_unit = 0
        self.silence_unit = _mode(self.encode(np.zeros(SAMPLE_RATE_HZ, np.float32)))

    @staticmethod
    def build(model_name: str = "speech_tokenizer_v2_25hz", **model_config):
        """A randomly initialised model (tests); ``model_config`` = s3tokenizer ModelConfig fields."""
        s3 = import_s3tokenizer()
        if "v3" in model_name:
            from s3tokenizer.model_v3 import ModelConfigV3 as Cfg
            return s3.S3TokenizerV3(model_name, Cfg(**model_config))
        if "v2" in model_name:
            from s3tokenizer.model_v2 import ModelConfig as Cfg
            return s3.S3TokenizerV2(model_name, Cfg(**model_config))
        from s3tokenizer.model import ModelConfig as Cfg
        return s3.S3Tokenizer(model_name, Cfg(**model_config))

    @classmethod
    def from_pretrained(cls, path: str | Path,
                        model_name: str = "speech_tokenizer_v2_25hz") -> S3Tokenizer:
        """Load an official ``.onnx`` file (or a folder holding exactly one) or an omni-saved folder."""
        path = _require_path(path, "S3 tokenizer")
        if path.is_dir() and (path / "speech_tokenizer.json").is_file():
            return cls.load(path)
        onnx = [path] if path.is_file() else sorted(path.glob("*.onnx"))
        if len(onnx) != 1 or onnx[0].suffix != ".onnx":
            raise SpeechTokenizerError(
                f"{path}: expected an S3 .onnx file, a folder with exactly one .onnx "
                f"(found {len(onnx)}), or a folder saved by S3Tokenizer.save")
        model = cls.build(model_name)
        model.init_from_onnx(str(onnx[0]))
        return cls(model, model_name)

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file
        directory = write_descriptor(directory, {
            "kind": self.kind, "model_name": self.model_name, "num_units": self.num_units,
            "silence_unit": self.silence_unit, "frame_rate_hz": self.frame_rate_hz,
            "model_config": dataclasses.asdict(self.model.config), "weights": "model.safetensors"})
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> S3Tokenizer:
        from safetensors.torch import load_file
        info = read_descriptor(_require_path(directory, "S3 tokenizer"))
        if info["kind"] != cls.kind:
            raise SpeechTokenizerError(f"{directory} holds a '{info['kind']}' tokenizer, not s3")
        weights = Path(directory) / info["weights"]
        if not weights.is_file():
            raise SpeechTokenizerError(f"{weights} missing: the tokenizer folder is incomplete")
        cfg = dict(info["model_config"])
        model = cls.build(info["model_name"], **cfg)
        model.load_state_dict(load_file(str(weights)), strict=True)
        return cls(model, info["model_name"])

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """``len(wave) // 640`` S3 units (int64); audio must be 16 kHz mono float32."""
        s3 = import_s3tokenizer()
        wave = check_wave(wave, min_samples=self.hop_samples)
        torch = self._torch
        with torch.inference_mode():
            mel = s3.log_mel_spectrogram(torch.from_numpy(wave), n_mels=self.n_mels)
            mels, lens = s3.padding([mel])
            codes, code_lens = self.model.quantize(mels, lens)
        units = codes[0, : int(code_lens[0])].cpu().numpy()
        return _fit_length(units, wave.size // self.hop_samples, self.silence_unit)

    def decode(self, units: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            "S3 units cannot be decoded by omni: audio needs CosyVoice's flow-matching model and "
            "HiFi-GAN vocoder, which are not shipped. Use the 'mel_kmeans' or 'mimi' tokenizer "
            "when you need decoded audio.")

    def stream_encoder(self, window_frames: int = 50) -> WindowedStreamEncoder:
        return WindowedStreamEncoder(self, window_frames)

    def stream_decoder(self):
        self.decode(np.zeros(0, np.int64))  # raises NotImplementedError with the reason


# ----------------------------------------------------------------------------- Mimi
class MimiTokenizer:
    """``transformers.MimiModel`` from a local folder; first ``num_codebooks`` codebooks."""

    kind = "mimi"
    sample_rate = SAMPLE_RATE_HZ

    def __init__(self, model, num_codebooks: int = 1):
        import torch
        self._torch = torch
        self.model = model.eval()
        cfg = model.config
        if not 1 <= num_codebooks <= cfg.num_quantizers:
            raise SpeechTokenizerError(
                f"num_codebooks={num_codebooks} must be in [1, {cfg.num_quantizers}] for this model")
        self.num_codebooks = int(num_codebooks)
        self.codebook_size = int(cfg.codebook_size)
        self.num_units = self.num_codebooks * self.codebook_size
        self.model_rate_hz = int(cfg.sampling_rate)
        self.model_frame_rate_hz = float(cfg.frame_rate)
        spf = SAMPLE_RATE_HZ / self.model_frame_rate_hz
        if spf != int(spf) or int(spf) % self.num_codebooks:
            raise SpeechTokenizerError(
                f"Mimi frame rate {self.model_frame_rate_hz} Hz x {num_codebooks} codebooks does not "
                "give a whole number of 16 kHz samples per unit; choose another num_codebooks")
        self.samples_per_frame = int(spf)
        self.hop_samples = self.samples_per_frame // self.num_codebooks
        self.frame_rate_hz = self.model_frame_rate_hz * self.num_codebooks
        self.silence_units = np.zeros(self.num_codebooks, np.int64)
        self.silence_unit = 0
        zeros = self.encode(np.zeros(SAMPLE_RATE_HZ, np.float32)).reshape(-1, self.num_codebooks)
        self.silence_units = np.array([_mode(zeros[:, q]) for q in range(self.num_codebooks)])
        self.silence_unit = int(self.silence_units[0])

    @classmethod
    def from_pretrained(cls, path: str | Path, num_codebooks: int = 1) -> MimiTokenizer:
        """Load a Hugging Face Mimi folder (config.json + weights) or an omni-saved folder."""
        path = _require_path(path, "Mimi")
        if (path / "speech_tokenizer.json").is_file():
            return cls.load(path)
        if not (path / "config.json").is_file():
            raise SpeechTokenizerError(f"{path} has no config.json: not a transformers Mimi folder")
        from transformers import MimiModel
        return cls(MimiModel.from_pretrained(str(path), local_files_only=True), num_codebooks)

    def save(self, directory: str | Path) -> Path:
        directory = write_descriptor(directory, {
            "kind": self.kind, "num_codebooks": self.num_codebooks, "num_units": self.num_units,
            "silence_unit": self.silence_unit, "frame_rate_hz": self.frame_rate_hz, "model": "model"})
        self.model.save_pretrained(str(directory / "model"))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MimiTokenizer:
        info = read_descriptor(_require_path(directory, "Mimi"))
        if info["kind"] != cls.kind:
            raise SpeechTokenizerError(f"{directory} holds a '{info['kind']}' tokenizer, not mimi")
        model_dir = Path(directory) / info.get("model", "model")
        if not (model_dir / "config.json").is_file():
            raise SpeechTokenizerError(f"{model_dir}/config.json missing: the folder is incomplete")
        from transformers import MimiModel
        return cls(MimiModel.from_pretrained(str(model_dir), local_files_only=True),
                   info["num_codebooks"])

    def _resample(self, x: np.ndarray, src: int, dst: int) -> np.ndarray:
        if src == dst:
            return x
        import soxr
        return soxr.resample(x, src, dst).astype(np.float32)

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """``(len(wave) // samples_per_frame) * num_codebooks`` units, frame-major."""
        wave = check_wave(wave, min_samples=self.samples_per_frame)
        n_frames = wave.size // self.samples_per_frame
        x = self._resample(wave[: n_frames * self.samples_per_frame], SAMPLE_RATE_HZ,
                           self.model_rate_hz)
        torch = self._torch
        with torch.inference_mode():
            codes = self.model.encode(torch.from_numpy(x)[None, None],
                                      num_quantizers=self.num_codebooks).audio_codes
        codes = codes[0, : self.num_codebooks].cpu().numpy().astype(np.int64)  # (N, T)
        if codes.shape[1] < n_frames:
            pad = np.repeat(self.silence_units[:, None] % self.codebook_size, n_frames - codes.shape[1], 1)
            codes = np.concatenate([codes, pad], 1)
        codes = codes[:, :n_frames]
        offsets = np.arange(self.num_codebooks)[:, None] * self.codebook_size
        return (codes + offsets).T.reshape(-1)

    def decode(self, units: np.ndarray) -> np.ndarray:
        """Float32 16 kHz audio of ``len(units) * hop_samples`` samples."""
        units = check_units(units, self.num_units)
        n = self.num_codebooks
        if units.size % n:
            raise SpeechTokenizerError(f"Mimi with {n} codebooks decodes whole frames: got "
                                       f"{units.size} units, not a multiple of {n}")
        if not units.size:
            return np.zeros(0, np.float32)
        codes = units.reshape(-1, n).T - np.arange(n)[:, None] * self.codebook_size
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise SpeechTokenizerError("Mimi units are not frame-major (codebook q must use "
                                       "ids q*codebook_size .. (q+1)*codebook_size-1)")
        torch = self._torch
        with torch.inference_mode():
            audio = self.model.decode(torch.from_numpy(codes)[None]).audio_values[0, 0]
        audio = self._resample(audio.cpu().numpy().astype(np.float32), self.model_rate_hz,
                               SAMPLE_RATE_HZ)
        total = units.size * self.hop_samples
        return np.pad(audio[:total], (0, max(0, total - audio.size))).astype(np.float32)

    def stream_encoder(self, window_frames: int = 25) -> WindowedStreamEncoder:
        return WindowedStreamEncoder(self, window_frames * self.num_codebooks)

    def stream_decoder(self, window_frames: int = 25) -> WindowedStreamDecoder:
        return WindowedStreamDecoder(self, window_frames * self.num_codebooks)
