"""Wire protocol pieces that need no Ray: close codes, PCM16 codec, auth, WAV bodies, the batcher.

See ``docs/protocol.md`` for the contract these implement.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import io
import os
import time
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE_HZ = 16000

# WebSocket close codes (RFC 6455 + private 4xxx range), documented in docs/protocol.md.
CLOSE_NORMAL = 1000            # client sent {"type": "end"}; all audio delivered
CLOSE_UNSUPPORTED = 1003       # text frame that is not a control message; wrong sample rate declared
CLOSE_INVALID_PAYLOAD = 1007   # odd byte count (PCM16 needs 2 bytes per sample)
CLOSE_POLICY = 1008            # missing/wrong API token; origin not allowed
CLOSE_TOO_BIG = 1009           # binary frame larger than serve.max_frame_bytes
CLOSE_INTERNAL = 1011          # engine error (this session only)
CLOSE_SERVICE_RESTART = 1012   # the session's replica died (sent by the proxy hook serve_app.proxy_hooks)
CLOSE_TRY_AGAIN = 1013         # replica already holds serve.max_sessions_per_replica sessions
CLOSE_IDLE = 4001              # no frame for serve.idle_timeout_s
CLOSE_MAX_DURATION = 4002      # session longer than serve.max_session_s
CLOSE_TOO_SLOW = 4003          # backlog of unprocessed/unsent audio over max_backlog_s

TOKEN_ENV = "OMNI_API_TOKEN"


class ProtocolError(Exception):
    """A client error with the close code (WebSocket) or HTTP status to answer with."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit mono PCM -> float32 in [-1, 1)."""
    if len(data) % 2:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"binary frame of {len(data)} bytes: PCM16 needs an even "
                                                   "byte count (2 bytes per sample, little-endian)")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(pcm: np.ndarray) -> bytes:
    return (np.clip(np.asarray(pcm, np.float32), -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()


def expected_token() -> str | None:
    tok = os.environ.get(TOKEN_ENV, "")
    return tok or None


def check_token(authorization: str | None, query_token: str | None, expected: str | None) -> bool:
    """True when no token is configured, or ``Authorization: Bearer T`` / ``?token=T`` matches."""
    if expected is None:
        return True
    given = None
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    elif query_token:
        given = query_token
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def origin_allowed(origin: str | None, host: str | None, allowed: list[str] | None) -> bool:
    """``allowed`` None: same-origin browsers only (non-browser clients send no Origin).
    ``["*"]``: any origin. Else: an exact list of ``scheme://host[:port]``."""
    if origin is None or allowed == ["*"]:
        return True
    if allowed:
        return origin in allowed
    return host is not None and origin.split("://", 1)[-1] == host


def decode_audio_body(body: bytes, content_type: str | None, sample_rate_hz: int | None,
                      max_seconds: float) -> np.ndarray:
    """A WAV file (any rate/channels, resampled to 16 kHz mono) or raw PCM16 16 kHz mono."""
    if not body:
        raise ProtocolError(400, "empty body: send a WAV file or raw PCM16 16 kHz mono samples")
    if body[:4] == b"RIFF" or (content_type or "").startswith(("audio/wav", "audio/x-wav", "audio/wave")):
        import soundfile as sf
        try:
            wave, sr = sf.read(io.BytesIO(body), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - libsndfile raises several kinds
            raise ProtocolError(400, f"body is not a readable WAV file: {e}") from None
        wave = wave.mean(axis=1)
        if sr != SAMPLE_RATE_HZ:
            import soxr
            wave = soxr.resample(wave, sr, SAMPLE_RATE_HZ).astype(np.float32)
    else:
        if sample_rate_hz not in (None, SAMPLE_RATE_HZ):
            raise ProtocolError(400, f"raw PCM16 must be 16000 Hz mono, got sample_rate_hz={sample_rate_hz}: "
                                     "resample it, or send a WAV file (any rate is resampled)")
        try:
            wave = pcm16_to_float(body)
        except ProtocolError as e:
            raise ProtocolError(400, e.message) from None
    if wave.size / SAMPLE_RATE_HZ > max_seconds:
        raise ProtocolError(413, f"utterance is {wave.size / SAMPLE_RATE_HZ:.1f} s, the limit is {max_seconds:.0f} s")
    if wave.size < SAMPLE_RATE_HZ // 25:
        raise ProtocolError(400, f"utterance too short ({wave.size} samples): send at least 40 ms of audio")
    return wave


def wav_base64(pcm: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> str:
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.asarray(pcm, np.float32), sample_rate_hz, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def _runqueue_ns() -> int:
    """Nanoseconds this thread has spent runnable but waiting for a CPU (Linux schedstat; else 0)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class _Job:
    session: object
    future: asyncio.Future
    queued_at: float


class Batcher:
    """Cross-session batching: sessions with a ready chunk queue here; one worker thread steps
    everything that queued while the previous batch ran in a single ``engine.step_batch``.

    No artificial wait: an idle engine steps a lone session at once; under load batches form by
    themselves (requests arriving during a step go into the next one), up to ``max_batch``.
    """

    def __init__(self, engine, max_batch: int = 16):
        self.engine = engine
        self.max_batch = int(max_batch)
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.batches = 0
        self.batched_sessions = 0
        # Where the steps' wall time went, summed over batches (ms): on a CPU, waiting runnable for
        # a CPU (other processes), and the rest, blocked (the GIL, held by the replica's other
        # threads). /healthz shows them; benchmarks/serve_latency.py reports them per run.
        self.time_ms = {"wall": 0.0, "cpu": 0.0, "runqueue": 0.0}
        self._task: asyncio.Task | None = None

    def _timed_step(self, sessions: list) -> list:
        w0, c0, r0 = time.perf_counter(), time.thread_time(), _runqueue_ns()
        try:
            return self.engine.step_batch(sessions)
        finally:
            self.time_ms["wall"] += (time.perf_counter() - w0) * 1000
            self.time_ms["cpu"] += (time.thread_time() - c0) * 1000
            self.time_ms["runqueue"] += (_runqueue_ns() - r0) / 1e6

    def timing(self) -> dict:
        t = {k: round(v, 1) for k, v in self.time_ms.items()}
        t["blocked"] = round(max(0.0, t["wall"] - t["cpu"] - t["runqueue"]), 1)
        return t

    async def step(self, session) -> tuple[list[dict], float]:
        """Step one chunk of ``session``; returns (events, queue_ms)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        job = _Job(session, loop.create_future(), loop.time())
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            while not self.queue.empty() and len(jobs) < self.max_batch:
                jobs.append(self.queue.get_nowait())
            live = [j for j in jobs if not j.future.done() and not j.session.closed]
            if not live:
                continue
            start = loop.time()
            try:
                results = await asyncio.to_thread(self._timed_step, [j.session for j in live])
            except Exception as e:  # noqa: BLE001 - a failed batch fails its sessions, not the replica
                for j in live:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            self.batches += 1
            self.batched_sessions += len(live)
            for j, events in zip(live, results):
                if not j.future.done():
                    j.future.set_result((events, (start - j.queued_at) * 1000))
