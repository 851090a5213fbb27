"""Streaming full-duplex engine: user audio in, assistant audio + text + turn events out.

No Ray here: the serve layer (``serve_app/``) wraps this class; tests drive it directly.

Per chunk of ``speech_chunk`` user units (full_duplex_3 layout, see :mod:`omni.formats`)::

    U_i (speech_chunk user units) | A_text_i (text_chunk text ids or <text_pad>) | A_speech_i (speech_chunk units)

The engine appends ``U_i``, generates ``A_text_i`` (logits masked to text ids + ``text_pad``;
skipped for full_duplex_2 models) and ``A_speech_i`` (masked to unit ids) with a KV cache,
decodes the units to audio with the speech tokenizer's streaming decoder and emits events:

    {"type": "turn_start"}                     assistant starts speaking (first non-silence unit)
    {"type": "text", "text": str}              new assistant text (delta within the turn)
    {"type": "audio", "pcm": np.float32}       assistant audio, 16 kHz mono, [-1, 1]
    {"type": "turn_end"}                       assistant stopped (>= turn_end_silence_ms of silence units)
    {"type": "stats", "chunk_index", "chunk_ms", "step_ms", "context_tokens", "batch_size"}

Context bound: the context is ``prefix + recent chunks``. When the next chunk would exceed
``kv_window`` tokens, the oldest whole chunks are dropped (down to ``window_keep_fraction *
kv_window``) and the kept tokens are re-prefilled with fresh positions 0..n (as in training,
where every sequence starts at position 0). Per-chunk cost is therefore bounded by the window
size, not the conversation length; re-prefill happens once every ~``kv_window/2`` tokens.

Batching: :meth:`DuplexEngine.step_batch` stacks the sessions' caches (left-padded to the
longest, masked out with ``attention_mask``) and runs one forward per generated token for all of
them. Every session contributes the same number of new tokens per forward, so no query is ever
a pad and greedy outputs equal the unbatched ones.
"""
from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path

import numpy as np
import torch

from omni.config import ServeConfig, StageConfig

SAMPLE_RATE_HZ = 16000


class DuplexInputError(ValueError):
    """Bad audio handed to a session (wrong dtype/shape/values); the message says how to fix it."""


def check_pcm(pcm) -> np.ndarray:
    """Validate user audio: 1-D float array at 16 kHz in [-1, 1]; returns float32 (clipped)."""
    arr = np.asarray(pcm)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DuplexInputError(f"audio must be mono 1-D samples, got shape {arr.shape}: "
                               "mix down to one channel first")
    if arr.size and not np.issubdtype(arr.dtype, np.floating):
        raise DuplexInputError(f"audio must be float samples in [-1, 1], got dtype {arr.dtype}: "
                               "convert PCM16 with pcm.astype(np.float32) / 32768")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not np.isfinite(arr).all():
        raise DuplexInputError("audio contains NaN or inf samples")
    return np.clip(arr, -1.0, 1.0)


class DuplexSession:
    """One conversation's state: streaming codecs, context tokens, KV cache, turn tracking.

    Create with :meth:`DuplexEngine.session`; use as a context manager or call :meth:`close`.
    ``ids[-1]`` is always the *pending* token (fed with the next chunk); the cache covers ``ids[:-1]``.
    """

    def __init__(self, engine: DuplexEngine, seed: int = 0):
        self.engine = engine
        self.encoder = engine.speech_tokenizer.stream_encoder()
        self.decoder = engine.speech_tokenizer.stream_decoder()
        self.ids: list[int] = list(engine.prefix_ids)
        self.kv = None                 # list of (k, v) per layer, shape [1, heads, len(ids)-1, dim]
        self.user_units: list[int] = []
        self.chunk_index = 0
        self.samples_in = 0
        self.samples_out = 0
        self.speaking = False
        self.silence_run = 0
        self.turn_text_ids: list[int] = []
        self.turn_text = ""
        self.reprefills = 0
        self.closed = False
        self.generator = torch.Generator(device=engine.device).manual_seed(int(seed))
        self.last_step_ms = 0.0

    # ------------------------------------------------------------------ input
    def push(self, pcm) -> int:
        """Encode user audio (any number of samples); returns how many chunks are ready to step."""
        if self.closed:
            raise RuntimeError("session is closed")
        wave = check_pcm(pcm)
        self.samples_in += wave.size
        if wave.size:
            units = self.encoder.feed(wave)
            self.user_units.extend(int(u) for u in np.asarray(units).reshape(-1))
        return self.ready_chunks

    @property
    def ready_chunks(self) -> int:
        return len(self.user_units) // self.engine.speech_chunk

    @property
    def context_tokens(self) -> int:
        return len(self.ids)

    def feed(self, pcm) -> list[dict]:
        """Push audio and step every ready chunk (unbatched); returns the events in order."""
        self.push(pcm)
        events: list[dict] = []
        while self.ready_chunks:
            events += self.engine.step_batch([self])[0]
        return events

    def flush(self) -> list[dict]:
        """End of input: return the decoder's remaining audio (total = units generated * hop)."""
        pcm = np.asarray(self.decoder.flush(), np.float32).reshape(-1)
        self.samples_out += pcm.size
        return [{"type": "audio", "pcm": pcm}] if pcm.size else []

    def close(self) -> None:
        self.kv = None
        self.closed = True

    def __enter__(self) -> "DuplexSession":  # noqa: PYI034, UP037
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DuplexEngine:
    """Full-duplex inference over an export (``omni.model.load_export``) or an export folder.

    ``serve_cfg`` supplies ``temperature``, ``top_k`` and ``kv_window``; ``stage`` is
    ``full_duplex_3`` (text + speech, default) or ``full_duplex_2`` (speech only);
    ``text_chunk``/``speech_chunk`` default to the export config's stage settings; ``device``
    moves the model (e.g. ``"cuda"``; default: where the export loaded it, the CPU).
    """

    def __init__(self, export, serve_cfg: ServeConfig | None = None, *, stage: str | None = None,
                 text_chunk: int | None = None, speech_chunk: int | None = None,
                 window_keep_fraction: float = 0.5, turn_end_silence_ms: float = 400.0,
                 device: str | None = None):
        if isinstance(export, (str, Path)):
            from omni.model import load_export
            export = load_export(export)
        self.export = export
        self.model = export.model.eval() if device is None else export.model.to(device).eval()
        self.vocab = export.vocab
        self.text_tokenizer = export.text_tokenizer
        if getattr(export, "speech_tokenizer_dir", None) is None:
            raise FileNotFoundError("the export has no speech_tokenizer/ folder: re-export with the "
                                    "speech tokenizer (omni.model.save_export(..., speech_tokenizer_dir=...))")
        from omni.speech_tokenizer import load_speech_tokenizer
        self.speech_tokenizer = load_speech_tokenizer(export.speech_tokenizer_dir)
        self.cfg = serve_cfg or ServeConfig()
        cfg = getattr(export, "config", None)
        trained = ((getattr(export, "info", None) or {}).get("extra") or {}).get("stage")
        self.stage = stage or ("full_duplex_2" if trained == "full_duplex_2" else "full_duplex_3")
        if self.stage not in ("full_duplex_3", "full_duplex_2"):
            raise ValueError(f"stage must be full_duplex_3 or full_duplex_2, got {self.stage!r}")
        st = cfg.stages.get(self.stage) if cfg is not None and hasattr(cfg, "stages") else None
        st = st or StageConfig()  # an export without a config: the stage config's defaults
        self.speech_chunk = int(speech_chunk or st.speech_chunk)
        self.text_chunk = 0 if self.stage == "full_duplex_2" else int(text_chunk or st.text_chunk)
        if self.speech_chunk < 1:
            raise ValueError(f"speech_chunk must be >= 1, got {self.speech_chunk}")
        self.frame_rate_hz = float(self.speech_tokenizer.frame_rate_hz)
        self.samples_per_unit = round(SAMPLE_RATE_HZ / self.frame_rate_hz)
        self.chunk_ms = 1000.0 * self.speech_chunk / self.frame_rate_hz
        self.silence_unit = int(getattr(self.speech_tokenizer, "silence_unit", -1))
        self.turn_end_units = max(1, round(turn_end_silence_ms / 1000 * self.frame_rate_hz))
        self.prefix_ids = duplex_prefix(self.vocab, self.stage)
        self.chunk_tokens = 2 * self.speech_chunk + self.text_chunk
        if self.cfg.kv_window < len(self.prefix_ids) + 2 * self.chunk_tokens + 1:
            raise ValueError(f"serve.kv_window={self.cfg.kv_window} is too small for chunks of "
                             f"{self.chunk_tokens} tokens; use >= {len(self.prefix_ids) + 2 * self.chunk_tokens + 1}")
        self.keep_tokens = max(len(self.prefix_ids) + self.chunk_tokens + 1,
                               int(window_keep_fraction * self.cfg.kv_window))
        dev = self.device = next(self.model.parameters()).device
        self.masks = TokenMasks(self.vocab, dev)
        # "say nothing" per duplex phase, weighed against everything else by the two-stage sampler
        self.null_tokens = {"text": self.vocab.special("text_pad"),
                            "unit": (self.vocab.unit(self.silence_unit) if self.silence_unit >= 0 else None)}
        self.sampler = Sampler(self.cfg.temperature, self.cfg.top_k, self.cfg.silence_threshold)
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self._lock = threading.Lock()

    # --------------------------------------------------------------- sessions
    def session(self, seed: int = 0) -> DuplexSession:
        """A new conversation (usable as ``with engine.session() as s:``)."""
        return DuplexSession(self, seed)

    new_session = session

    def warmup(self) -> float:
        """Step one dummy chunk of silence in a throwaway session; returns its wall time in ms."""
        t0 = time.perf_counter()
        with self.session() as s:
            s.feed(np.zeros(self.speech_chunk * self.samples_per_unit + 2 * self.samples_per_unit, np.float32))
        return (time.perf_counter() - t0) * 1000

    # ------------------------------------------------------------------- step
    def step_batch(self, sessions: list[DuplexSession]) -> list[list[dict]]:
        """Step one chunk for every session (each must have ``ready_chunks >= 1``), batched."""
        if not sessions:
            return []
        if len({id(s) for s in sessions}) != len(sessions):
            raise ValueError("step_batch got the same session twice")
        for s in sessions:
            if s.closed or s.engine is not self:
                raise ValueError("step_batch got a closed session or one from another engine")
            if not s.ready_chunks:
                raise ValueError("step_batch got a session without a full user chunk; push more audio first")
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            for s in sessions:
                self._ensure_window(s)
            chunks = self._generate(sessions)
        step_ms = (time.perf_counter() - t0) * 1000
        return [self._emit(s, text, units, step_ms, len(sessions)) for s, (text, units) in zip(sessions, chunks)]

    def _ensure_window(self, s: DuplexSession) -> None:
        """Drop oldest whole chunks and re-prefill when the next chunk would overflow kv_window."""
        p = len(self.prefix_ids)
        if len(s.ids) + self.chunk_tokens > self.cfg.kv_window:
            body = s.ids[p:]                       # whole chunks; the last token is pending
            n_chunks = len(body) // self.chunk_tokens
            keep = max(1, (self.keep_tokens - p) // self.chunk_tokens)
            drop = max(0, n_chunks - keep)
            s.ids = list(self.prefix_ids) + body[drop * self.chunk_tokens:]
            s.kv = None
            s.reprefills += 1
        if s.kv is None and len(s.ids) > 1:
            s.kv = _prefill(self, s.ids[:-1])

    def _generate(self, sessions: list[DuplexSession]):
        """Append each session's next user chunk and sample its text + speech chunk."""
        n = self.speech_chunk
        first = []
        for s in sessions:
            user_ids = [self.vocab.unit(u) for u in s.user_units[:n]]
            del s.user_units[:n]
            first.append(s.ids[-1:] + user_ids)    # pending token (none at the start) + U_i
            s.ids.extend(user_ids)
        plan = ["text"] * self.text_chunk + ["unit"] * n
        out: list = [None] * len(sessions)
        for width in sorted({len(f) for f in first}):   # equal new-token counts per forward
            idx = [i for i, f in enumerate(first) if len(f) == width]
            got = _decode_batch(self, [sessions[i] for i in idx], [first[i] for i in idx], plan)
            for i, toks in zip(idx, got):
                out[i] = toks
        result = []
        for s, toks in zip(sessions, out):
            s.ids.extend(toks)
            result.append((toks[:self.text_chunk],
                           [int(t) - self.vocab.unit_offset for t in toks[self.text_chunk:]]))
        return result

    def _emit(self, s: DuplexSession, text_ids, units, step_ms: float, batch: int) -> list[dict]:
        events: list[dict] = []
        pad, eot = self.vocab.special("text_pad"), self.vocab.special("eot")
        for u in units:
            if u != self.silence_unit:
                s.silence_run = 0
                if not s.speaking:
                    s.speaking = True
                    events.append({"type": "turn_start"})
            else:
                s.silence_run += 1
        for tok in text_ids:                      # text stream: ids, <text_pad>, <eot> ends a turn's text
            if tok == pad:
                continue
            if tok == eot:
                if s.turn_text_ids:
                    events.append({"type": "text_end", "text": self.text_tokenizer.decode(s.turn_text_ids)})
                s.turn_text_ids, s.turn_text = [], ""
                continue
            s.turn_text_ids.append(tok)
            full = self.text_tokenizer.decode(s.turn_text_ids)
            if full.endswith("\ufffd"):          # byte-level BPE: wait for the rest of the character
                continue
            delta = full.removeprefix(s.turn_text)
            s.turn_text = full
            if delta:
                events.append({"type": "text", "text": delta})
        pcm = np.asarray(s.decoder.feed(np.asarray(units, np.int64)), np.float32).reshape(-1)
        s.samples_out += pcm.size
        events.append({"type": "audio", "pcm": pcm})
        if s.speaking and s.silence_run >= self.turn_end_units:
            s.speaking = False
            events.append({"type": "turn_end"})
        events.append({"type": "stats", "chunk_index": s.chunk_index, "chunk_ms": self.chunk_ms,
                       "step_ms": round(step_ms, 3), "context_tokens": len(s.ids), "batch_size": batch})
        s.chunk_index += 1
        s.last_step_ms = step_ms
        return events

    # ------------------------------------------------------------ half duplex
    def respond(self, wave, *, max_user_text: int = 64, max_assistant_text: int = 96,
                max_speech_s: float = 20.0, seed: int = 0) -> dict:
        """Half duplex (OmniChat path): one user utterance in -> {"user_text", "text", "style", "audio"}.

        Prompt ``<user_speech> S_u <user_text>``; generates the user's text until
        ``<assistant_text>``, the assistant's text (+ style tags) until ``<assistant_speech>``,
        then speech units until ``<eot>`` (or ``max_speech_s``). Audio is 16 kHz float32.
        """
        wave = check_pcm(wave)
        if wave.size < self.samples_per_unit:
            raise DuplexInputError(f"utterance too short: {wave.size} samples; send at least "
                                   f"{self.samples_per_unit} samples (one speech unit) of 16 kHz audio")
        units = np.asarray(self.speech_tokenizer.encode(wave), np.int64).reshape(-1)
        with torch.inference_mode():         # the engine lock is taken per forward (see _respond)
            return _respond(self, units, max_user_text, max_assistant_text, int(max_speech_s * self.frame_rate_hz),
                            torch.Generator(device=self.device).manual_seed(seed))


# ------------------------------------------------------------------ generation helpers
def duplex_prefix(vocab, stage: str) -> list[int]:
    """Token ids that open a full-duplex sequence: none (:mod:`omni.formats` starts at ``U_0``).

    Kept as the one place to change should the format gain a start marker; the rolling
    window always keeps these tokens.
    """
    return []


class TokenMasks:
    """Boolean masks over the vocabulary (True = allowed) for each generation phase."""

    def __init__(self, vocab, device):
        ids = torch.arange(vocab.size)
        text = ids < vocab.text_size
        units = (ids >= vocab.unit_offset) & (ids < vocab.size)

        def one(*names):
            m = torch.zeros(vocab.size, dtype=torch.bool)
            for n in names:
                m[vocab.special(n)] = True
            return m

        style = torch.zeros(vocab.size, dtype=torch.bool)
        for name in vocab.specials:
            if name.startswith(("pitch_", "speed_", "emotion_")):
                style[vocab.special(name)] = True
        self.text = (text | one("text_pad", "eot")).to(device)     # duplex text chunk
        self.unit = units.to(device)                                 # duplex speech chunk
        self.user_text = (text | one("assistant_text")).to(device)   # respond: user transcript
        self.assistant_text = (text | style | one("assistant_speech")).to(device)
        self.speech = (units | one("eot")).to(device)


class Sampler:
    """Chooses one token per row among the allowed ones.

    Two stages when ``null`` (the silence unit, or ``<text_pad>``) is given and
    ``silence_threshold < 1``: emit ``null`` when its probability is >= the threshold, else
    choose among the other allowed tokens. The choice among tokens is argmax when
    ``temperature == 0``, else temperature + optional top-k sampling with per-row generators.
    """

    def __init__(self, temperature: float, top_k: int, silence_threshold: float = 1.0):
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.silence_threshold = float(silence_threshold)

    def __call__(self, logits: torch.Tensor, allowed: torch.Tensor, generators, null: int | None = None) -> list[int]:
        logits = logits.float().masked_fill(~allowed, float("-inf"))
        quiet = None
        if null is not None and self.silence_threshold < 1.0:
            quiet = torch.softmax(logits, -1)[:, null] >= self.silence_threshold
            logits = logits.clone()
            logits[:, null] = float("-inf")
        picked = self._pick(logits, allowed, generators)
        if quiet is not None:
            picked = [null if q else p for p, q in zip(picked, quiet.tolist())]
        return picked

    def _pick(self, logits: torch.Tensor, allowed: torch.Tensor, generators) -> list[int]:
        if self.temperature <= 0:
            return logits.argmax(-1).tolist()
        logits = logits / self.temperature
        if self.top_k > 0:
            k = min(self.top_k, int(allowed.sum()))
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, -1)
        return [int(torch.multinomial(probs[b], 1, generator=g)) for b, g in enumerate(generators)]


def _forward(engine, input_ids, cache, attention_mask=None, position_ids=None):
    out = engine.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=True, logits_to_keep=1, **{engine._cache_kw: cache})
    new_cache = getattr(out, "cache", None)
    if new_cache is None:
        new_cache = out.past_key_values
    return out.logits[:, -1, :], new_cache


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _prefill(engine, ids: list[int]):
    """KV cache (list of per-layer (k, v), batch 1) for ``ids``; None when ``ids`` is empty."""
    if not ids:
        return None
    dev = engine.masks.unit.device
    _, cache = _forward(engine, torch.tensor([ids], device=dev), None)
    return [(k.contiguous(), v.contiguous()) for k, v in _layers(cache)]


def _decode_batch(engine, sessions, first: list[list[int]], plan: list[str]) -> list[list[int]]:
    """Feed ``first`` (same length per session) then sample one token per ``plan`` entry.

    Caches are left-padded to the longest and masked; the last sampled token is not fed (it is
    the next chunk's pending token). Each session's cache is unpadded and stored back.
    """
    from transformers import DynamicCache
    dev = engine.masks.unit.device
    lens = [0 if s.kv is None else s.kv[0][0].shape[2] for s in sessions]
    lmax = max(lens)
    if lmax:
        ref = next(s.kv for s in sessions if s.kv is not None)
        layers = []
        for li, (k0, v0) in enumerate(ref):
            ks, vs = [], []
            for s, n in zip(sessions, lens):
                pad = (1, k0.shape[1], lmax - n, k0.shape[3])
                k = torch.zeros(pad, dtype=k0.dtype, device=dev)
                v = torch.zeros(pad, dtype=v0.dtype, device=dev)
                if n:
                    k, v = torch.cat([k, s.kv[li][0]], 2), torch.cat([v, s.kv[li][1]], 2)
                ks.append(k)
                vs.append(v)
            layers.append((torch.cat(ks, 0), torch.cat(vs, 0)))
        cache = DynamicCache(ddp_cache_data=layers, config=engine.model.config)
    else:
        cache = DynamicCache(config=engine.model.config)
    t = len(first[0])
    mask = torch.ones(len(sessions), lmax + t, dtype=torch.long, device=dev)
    for b, n in enumerate(lens):
        mask[b, : lmax - n] = 0
    pos = torch.tensor([[n + i for i in range(t)] for n in lens], device=dev)
    tokens = torch.tensor(first, device=dev)
    gens = [s.generator for s in sessions]
    out: list[list[int]] = [[] for _ in sessions]
    padded = len(set(lens)) > 1          # equal lengths: HF's default causal mask and positions
    for step, phase in enumerate(plan):
        logits, cache = _forward(engine, tokens, cache, mask if padded else None, pos if padded else None)
        null = engine.null_tokens.get(phase)
        picked = engine.sampler(logits, getattr(engine.masks, phase), gens, null)
        for b, tok in enumerate(picked):
            out[b].append(tok)
        if step == len(plan) - 1:
            break
        tokens = torch.tensor([[tok] for tok in picked], device=dev)
        pos = pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones(len(sessions), 1, dtype=mask.dtype, device=dev)], 1)
    for b, (s, n) in enumerate(zip(sessions, lens)):
        s.kv = [(k[b:b + 1, :, lmax - n:].contiguous(), v[b:b + 1, :, lmax - n:].contiguous())
                for k, v in _layers(cache)]
    return out


def _respond(engine, units: np.ndarray, max_user_text: int, max_assistant_text: int,
             max_units: int, generator: torch.Generator) -> dict:
    v = engine.vocab
    dev = engine.masks.unit.device
    prompt = [v.special("user_speech")] + v.units_to_ids(units).tolist() + [v.special("user_text")]
    with engine._lock:        # per forward, so duplex sessions' steps interleave with a long reply
        logits, cache = _forward(engine, torch.tensor([prompt], device=dev), None)

    def run(mask, stop: int, limit: int) -> list[int]:
        nonlocal logits, cache
        got: list[int] = []
        while True:
            tok = engine.sampler(logits, mask, [generator])[0] if len(got) < limit else stop
            with engine._lock:
                logits, cache = _forward(engine, torch.tensor([[tok]], device=dev), cache)
            if tok == stop:
                return got
            got.append(tok)

    user_ids = run(engine.masks.user_text, v.special("assistant_text"), max_user_text)
    asst = run(engine.masks.assistant_text, v.special("assistant_speech"), max_assistant_text)
    speech = run(engine.masks.speech, v.special("eot"), max_units)
    style = {"pitch": "normal", "speed": "normal", "emotion": "neutral"}
    generated = False
    for tok in asst:
        if v.is_special(tok):
            kind, _, value = v.special_name(tok).partition("_")
            style[kind] = value
            generated = True
    text_ids = [t for t in asst if v.is_text(t)]
    out_units = np.asarray(speech, np.int64) - v.unit_offset
    audio = (np.asarray(engine.speech_tokenizer.decode(out_units), np.float32).reshape(-1)
             if out_units.size else np.zeros(0, np.float32))
    return {"user_text": engine.text_tokenizer.decode(user_ids), "text": engine.text_tokenizer.decode(text_ids),
            "style": style, "style_generated": generated, "units": out_units, "audio": audio,
            "sample_rate_hz": SAMPLE_RATE_HZ}
