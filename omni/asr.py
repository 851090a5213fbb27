"""One speech-recognition interface, two recognisers, and the shared WER text normalisation.

    asr = WhisperASR()                         # Whisper base (faster-whisper, int8, CPU)
    asr = AlignedASR("outputs/.../export")     # the project's own aligned checkpoint
    words = asr.transcribe(audio, sample_rate_hz=16000)   # [Word(text, start_s, end_s), ...]
    text = asr.transcribe_text(audio, 16000)

Every recogniser has ``name``, ``word_timings`` (bool) and ``transcribe(audio, sample_rate_hz)``
returning a list of :class:`Word` (text + start/end seconds from the start of ``audio``).
:class:`AlignedASR` decodes the align format ``<asr> S <text> T <eot>`` greedily: it has no
word timings (``start_s`` / ``end_s`` are ``None``, ``word_timings = False``).

:func:`normalize_for_wer` (:func:`omni.metrics.text.normalize`, which spells numbers out, then
apostrophes dropped) and :func:`wer` / :func:`corpus_wer` are what QC and the ASR benchmark
score with. :func:`fdb_output` writes the Full-Duplex-Bench
``output.json`` shape.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omni.metrics.text import number_to_words

SAMPLE_RATE_HZ = 16000

# ------------------------------------------------------------------------- normalisation
def normalize_for_wer(text: str) -> str:
    """Text for WER: :func:`omni.metrics.text.normalize` (lower case, numbers spelled out: "9" ->
    "nine", "21st" -> "twenty first", "2.5" -> "two point five", "%" -> "percent"; punctuation off,
    hyphens split, spaces collapsed), unambiguous contractions expanded ("I'm" -> "i am",
    "don't" -> "do not", "can't" -> "can not"; not "'s"), then apostrophes dropped ("it's" ->
    "its", "o'clock" -> "oclock")."""
    from omni.metrics.text import normalize
    words = normalize(text).split()
    return " ".join(_CONTRACTIONS.get(w, w).replace("'", "") for w in words)


# Unambiguous English contractions, expanded as Whisper's English normaliser does ("'s" stays:
# "it's" may be "it is" or "it has").
_CONTRACTIONS = {"can't": "can not", "cannot": "can not", "won't": "will not", "let's": "let us",
                 "that's": "that is", "what's": "what is", "there's": "there is", "here's": "here is"}
for _p in ("i", "you", "we", "they", "he", "she", "it", "that", "there"):
    _CONTRACTIONS.update({f"{_p}'ll": f"{_p} will", f"{_p}'d": f"{_p} would"})
for _p in ("you", "we", "they"):
    _CONTRACTIONS.update({f"{_p}'re": f"{_p} are", f"{_p}'ve": f"{_p} have"})
_CONTRACTIONS.update({"i'm": "i am", "i've": "i have"})
for _v in ("do", "does", "did", "is", "are", "was", "were", "have", "has", "had", "would", "should", "could",
           "must", "need"):
    _CONTRACTIONS[f"{_v}n't"] = f"{_v} not"


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one utterance after :func:`normalize_for_wer` (an empty reference
    scores 0 against an empty hypothesis, else 1)."""
    ref, hyp = normalize_for_wer(reference).split(), normalize_for_wer(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[len(hyp)] / len(ref))


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Total word edits / total reference words over many utterances."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses: lengths must match")
    n = [len(normalize_for_wer(r).split()) for r in references]
    if not sum(n):
        raise ValueError("every reference is empty after normalisation: nothing to score")
    return float(sum(wer(r, h) * k for r, h, k in zip(references, hypotheses, n)) / sum(n))


# ------------------------------------------------------------------------- interface
@dataclass(frozen=True)
class Word:
    text: str
    start_s: float | None
    end_s: float | None


def words_text(words: list[Word]) -> str:
    return " ".join(w.text for w in words if w.text)


def fdb_output(words: list[Word], offset_s: float = 0.0) -> dict:
    """Full-Duplex-Bench ``output.json``: ``{"text", "chunks": [{"text", "timestamp": [s, e]}]}``;
    timestamps shifted by ``-offset_s`` (e.g. audio cut after an interruption). Needs word timings."""
    if any(w.start_s is None for w in words):
        raise ValueError("fdb_output needs word timings: use WhisperASR (AlignedASR has none)")
    return {"text": words_text(words),
            "chunks": [{"text": w.text, "timestamp": [round(w.start_s - offset_s, 3), round(w.end_s - offset_s, 3)]}
                       for w in words]}


def to_16k(audio, sample_rate_hz: int) -> np.ndarray:
    """Mono float32 at 16 kHz (soxr resampling); rejects empty-rate / multi-channel input."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"transcribe expects mono audio (1-D), got shape {x.shape}: mix or pick a channel")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    if sample_rate_hz != SAMPLE_RATE_HZ and len(x):
        import soxr
        x = soxr.resample(x, sample_rate_hz, SAMPLE_RATE_HZ).astype(np.float32)
    return x


class ASR:
    """Base: subclasses implement ``_words(audio16k)``."""
    name = "asr"
    word_timings = False

    def transcribe(self, audio, sample_rate_hz: int = SAMPLE_RATE_HZ) -> list[Word]:
        x = to_16k(audio, sample_rate_hz)
        if len(x) < SAMPLE_RATE_HZ // 50:  # < 20 ms: nothing to hear
            return []
        return self._words(x)

    def transcribe_text(self, audio, sample_rate_hz: int = SAMPLE_RATE_HZ) -> str:
        return words_text(self.transcribe(audio, sample_rate_hz))

    def __call__(self, wave16k) -> str:  # the ``asr(wave16k) -> str`` callable of data_prep.synth.qc
        return self.transcribe_text(wave16k, SAMPLE_RATE_HZ)

    def _words(self, audio16k: np.ndarray) -> list[Word]:
        raise NotImplementedError


def default_threads() -> int:
    """``$OMNI_ASR_THREADS``, else min(2, cpu count)."""
    env = os.environ.get("OMNI_ASR_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"OMNI_ASR_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return max(1, min(2, os.cpu_count() or 1))


class WhisperASR(ASR):
    """Whisper base through faster-whisper (CTranslate2 int8 on CPU), greedy, English, word timings.

    ``model_dir``: a CTranslate2 Whisper folder or ``pretrained:whisper-base`` (default)."""
    name = "whisper-base"
    word_timings = True

    def __init__(self, model_dir: str | os.PathLike | None = None, cpu_threads: int | None = None,
                 language: str = "en", beam_size: int = 1, device: str = "cpu"):
        from omni.pretrained import PretrainedMissing, resolve_path, whisper_base_dir
        path = Path(resolve_path(model_dir) if model_dir is not None else whisper_base_dir())
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path} is not a faster-whisper model folder (needs model.bin + config.json)")
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise PretrainedMissing("faster-whisper is not installed: run `make models`") from e
        self.model_dir = path
        self.cpu_threads = cpu_threads or default_threads()
        self.language, self.beam_size = language, beam_size
        self.model = WhisperModel(str(path), device=device, compute_type="int8", cpu_threads=self.cpu_threads)

    def _words(self, audio16k: np.ndarray) -> list[Word]:
        segments, _ = self.model.transcribe(audio16k, language=self.language, beam_size=self.beam_size,
                                            word_timestamps=True, condition_on_previous_text=False)
        return [Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3))
                for s in segments for w in (s.words or []) if w.word.strip()]


class AlignedASR(ASR):
    """The project's own checkpoint as a recogniser: speech units -> ``<asr> S <text>`` -> greedy
    text until ``<eot>`` (text ids only). No word timings."""
    name = "omni-aligned"
    word_timings = False

    def __init__(self, export, max_new_tokens: int = 64):
        from omni.model import Export, load_export
        from omni.speech_tokenizer import load_speech_tokenizer
        self.export = export if isinstance(export, Export) else load_export(export)
        if self.export.speech_tokenizer_dir is None:
            raise ValueError("AlignedASR needs an export with a speech_tokenizer/ folder")
        self.speech = load_speech_tokenizer(self.export.speech_tokenizer_dir)
        self.max_new_tokens = max_new_tokens
        v = self.export.vocab
        self._allowed = np.zeros(v.size, dtype=bool)
        self._allowed[: v.text_size] = True
        self._allowed[v.special("eot")] = True

    def text_ids(self, units) -> list[int]:
        """Greedy decode of the text after ``<asr> units <text>`` (stops at ``<eot>``)."""
        import torch
        v, model = self.export.vocab, self.export.model
        from omni.model import greedy_decode
        prompt = [v.special("asr"), *v.units_to_ids(np.asarray(units)).tolist(), v.special("text")]
        return greedy_decode(model, prompt, torch.from_numpy(self._allowed), v.special("eot"), self.max_new_tokens)

    def _words(self, audio16k: np.ndarray) -> list[Word]:
        text = self.export.text_tokenizer.decode(self.text_ids(self.speech.encode(audio16k)))
        return [Word(w, None, None) for w in text.split()]


def timed_transcribe(asr: ASR, audio, sample_rate_hz: int) -> tuple[list[Word], float]:
    """(words, real-time factor = compute seconds / audio seconds)."""
    t0 = time.perf_counter()
    words = asr.transcribe(audio, sample_rate_hz)
    return words, (time.perf_counter() - t0) / max(1e-9, len(audio) / sample_rate_hz)


__all__ = ["ASR", "AlignedASR", "WhisperASR", "Word", "corpus_wer", "fdb_output", "normalize_for_wer",
           "number_to_words", "timed_transcribe", "to_16k", "wer", "words_text"]
