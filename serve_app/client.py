"""Stream a WAV file to ``WS /v1/duplex``, record the assistant's reply, print latency stats.

    python -m serve_app.client --url ws://127.0.0.1:8000/v1/duplex --wav in.wav --out reply.wav [--fast]

Latency of a step = time from sending the sample that completes user chunk i to receiving the
first assistant message of step i (its audio frame; its stats event when the step has no audio).
The chunk length comes from the server's ``ready`` event (``chunk_ms``). Underruns: gaps in a
simulated real-time playback of the reply that starts ``prebuffer_ms`` after the first audio
arrives. Token: ``--token`` or ``$OMNI_API_TOKEN``.

Busy servers: a session refused with close 1013 (every replica full) or an HTTP 503 handshake
(Serve has no replica to take it) is retried with exponential backoff, never sooner than the
server's ``retry_after_ms`` hint, for up to ``--max-wait-s``; each wait is announced on stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time

import numpy as np

from serve_app.protocol import SAMPLE_RATE_HZ, float_to_pcm16


def load_wav_16k(path) -> np.ndarray:
    import soundfile as sf
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE_HZ:
        import soxr
        wave = soxr.resample(wave, sr, SAMPLE_RATE_HZ).astype(np.float32)
    return wave


class ServerBusy(Exception):
    """The server refused the session for now (close 1013, or HTTP 503 at the handshake)."""

    def __init__(self, message: str, retry_after_ms: float | None = None, code: int = 1013):
        super().__init__(message)
        self.message, self.retry_after_ms, self.code = message, retry_after_ms, code


def backoff_s(attempt: int, retry_after_ms: float | None, base_s: float = 0.5, cap_s: float = 30.0,
              rng: random.Random | None = None) -> float:
    """Wait before retry ``attempt`` (0-based): exponential from ``base_s``, capped at ``cap_s``,
    never below the server's hint, plus up to 25 % jitter so refused clients do not return in step."""
    wait = max(min(cap_s, base_s * 2 ** attempt), (retry_after_ms or 0) / 1000)
    return wait * (1 + 0.25 * (rng or random).random())


def _pct(values, q):
    return round(float(np.percentile(values, q)), 3) if len(values) else None


async def stream_async(url: str, wave: np.ndarray, realtime: bool = True, token: str | None = None,
                       frame_ms: float = 20.0, prebuffer_ms: float = 100.0, timeout_s: float = 60.0) -> dict:
    import websockets

    headers = {"Authorization": f"Bearer {token}"} if token else None
    res = {"latencies_ms": [], "steps": [], "texts": [], "events": {}, "audio": [], "close_code": None,
           "errors": []}
    try:
        conn = await websockets.connect(url, additional_headers=headers, max_size=2 ** 24, open_timeout=timeout_s)
    except websockets.InvalidStatus as e:
        if e.response.status_code in (429, 503):
            after = e.response.headers.get("Retry-After")
            raise ServerBusy(f"HTTP {e.response.status_code} at the handshake",
                             float(after) * 1000 if after and after.replace(".", "", 1).isdigit() else None,
                             e.response.status_code) from None
        raise
    async with conn as ws:
        try:
            ready = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        except websockets.ConnectionClosed as e:
            if e.rcvd is not None and e.rcvd.code == 1013:
                raise ServerBusy(e.rcvd.reason or "server busy") from None
            raise
        if ready.get("type") == "error" and ready.get("code") == 1013:
            raise ServerBusy(ready.get("message", "server busy"), ready.get("retry_after_ms"))
        if ready.get("type") != "ready":
            raise RuntimeError(f"server refused the session: {ready}")
        res["replica"], res["pid"] = ready.get("replica"), ready.get("pid")
        res["chunk_ms"] = ready["chunk_ms"]
        chunk_samples = round(ready["chunk_ms"] * SAMPLE_RATE_HZ / 1000)
        frame = int(SAMPLE_RATE_HZ * frame_ms / 1000)
        sent_at: dict[int, float] = {}
        arrivals: list[tuple[float, int]] = []

        async def sender():
            t0, sent = time.perf_counter(), 0
            for i in range(0, wave.size, frame):
                piece = wave[i:i + frame]
                if realtime:
                    await asyncio.sleep(max(0.0, t0 + i / SAMPLE_RATE_HZ - time.perf_counter()))
                await ws.send(float_to_pcm16(piece))
                before, sent = sent, sent + piece.size
                for c in range(before // chunk_samples, sent // chunk_samples):
                    sent_at[c] = time.perf_counter()
            await ws.send(json.dumps({"type": "end"}))

        async def receiver():
            try:
                await _receive()
            except websockets.ConnectionClosed:        # lost replica (1012), dropped connection (1006), ...
                pass

        def step_done(ev: dict, now: float) -> None:
            lat = (now - sent_at[ev["chunk_index"]]) * 1000
            res["latencies_ms"].append(lat)
            res["steps"].append({"chunk_index": ev["chunk_index"], "latency_ms": round(lat, 3), "at_s": now,
                                 "recv_unix_ms": time.time() * 1000,
                                 **{k: ev.get(k) for k in ("queue_ms", "step_ms", "server_ms", "batch_size",
                                                           "sent_unix_ms")}})

        async def _receive():
            pending = None
            async for msg in ws:
                now = time.perf_counter()
                if isinstance(msg, bytes):
                    pcm = np.frombuffer(msg, "<i2").astype(np.float32) / 32768
                    res["audio"].append(pcm)
                    arrivals.append((now, pcm.size))
                    if pending is not None and pending["chunk_index"] in sent_at:
                        step_done(pending, now)
                    pending = None
                    continue
                ev = json.loads(msg)
                res["events"][ev["type"]] = res["events"].get(ev["type"], 0) + 1
                if ev["type"] == "stats":
                    pending = ev
                    if ev.get("audio_bytes", 0) == 0 and ev["chunk_index"] in sent_at:
                        step_done(ev, now)
                        pending = None
                elif ev["type"] == "text":
                    res["texts"].append(ev["text"])
                elif ev["type"] == "error":
                    res["errors"].append(ev)
                elif ev["type"] == "done":
                    res["done"] = ev

        send_task = asyncio.create_task(sender())
        try:
            await asyncio.wait_for(receiver(), timeout_s + wave.size / SAMPLE_RATE_HZ)
        finally:
            send_task.cancel()
            await asyncio.gather(send_task, return_exceptions=True)
        res["close_code"] = ws.close_code
    if "done" not in res and not res["errors"]:
        res["errors"].append({"type": "error", "code": res["close_code"],
                              "message": "connection closed before \"done\" (no close frame)" if res["close_code"] == 1006
                              else "connection closed before \"done\""})
    gaps = underrun_times(arrivals, prebuffer_ms)
    res["underruns"], res["underrun_at_s"] = len(gaps), gaps
    return res


async def stream_with_retry(url: str, wave: np.ndarray, *, max_wait_s: float = 60.0, notify=None,
                            rng: random.Random | None = None, **kw) -> dict:
    """:func:`stream_async`, retried while the server is busy (1013 / HTTP 503), with
    :func:`backoff_s` waits for up to ``max_wait_s`` in all. ``notify(attempt, wait_s, busy)`` is
    called before each wait (the CLI tells the person). The result adds ``attempts`` and
    ``busy_wait_s``; when the server stays busy it has ``errors`` = [the last refusal]."""
    waited, attempt = 0.0, 0
    while True:
        try:
            res = await stream_async(url, wave, **kw)
            res.update(attempts=attempt + 1, busy_wait_s=round(waited, 3))
            return res
        except ServerBusy as busy:
            wait = backoff_s(attempt, busy.retry_after_ms, rng=rng)
            if waited + wait > max_wait_s:
                return {"latencies_ms": [], "texts": [], "events": {}, "audio": [], "underruns": 0,
                        "close_code": busy.code, "attempts": attempt + 1, "busy_wait_s": round(waited, 3),
                        "errors": [{"type": "error", "code": busy.code, "message": busy.message,
                                    "retry_after_ms": busy.retry_after_ms}]}
            if notify is not None:
                notify(attempt + 1, wait, busy)
            await asyncio.sleep(wait)
            waited += wait
            attempt += 1


class Playback:
    """Real-time playback of received audio, started ``prebuffer_ms`` after the first frame:
    ``add(time_s, samples)`` returns True when that frame came after the buffer had run dry."""

    def __init__(self, prebuffer_ms: float = 100.0):
        self.prebuffer_s = prebuffer_ms / 1000
        self.play_end: float | None = None
        self.underruns = 0

    def add(self, t: float, samples: int) -> bool:
        late = False
        if self.play_end is None:
            self.play_end = t + self.prebuffer_s
        elif t > self.play_end + 1e-3:
            late = True
            self.underruns += 1
            self.play_end = t
        self.play_end += samples / SAMPLE_RATE_HZ
        return late


def underrun_times(arrivals: list[tuple[float, int]], prebuffer_ms: float) -> list[float]:
    """Arrival times of the audio frames that came after the playback buffer ran dry
    (:class:`Playback` over ``(time_s, samples)`` arrivals)."""
    play = Playback(prebuffer_ms)
    return [t for t, n in arrivals if play.add(t, n)]


def _underruns(arrivals: list[tuple[float, int]], prebuffer_ms: float) -> int:
    """Gaps when playing the received audio in real time from first arrival + prebuffer."""
    return len(underrun_times(arrivals, prebuffer_ms))


def _tell_busy(attempt: int, wait_s: float, busy: ServerBusy) -> None:
    print(f"server busy ({busy.message}); retrying in {wait_s:.1f} s (attempt {attempt + 1})",
          file=sys.stderr, flush=True)


def stream_wav(url: str, wav_path, out_path=None, realtime: bool = True, token: str | None = None,
               frame_ms: float = 20.0, max_wait_s: float = 60.0, notify=_tell_busy) -> dict:
    """Stream ``wav_path`` (any rate, resampled to 16 kHz mono) and write the reply to ``out_path``;
    a busy server is retried (:func:`stream_with_retry`).

    Returns ``{"chunks", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean",
    "underruns", "audio_in_s", "audio_out_s", "text", "events", "close_code", "errors", "attempts",
    "busy_wait_s"}``.
    """
    wave = load_wav_16k(wav_path)
    token = token if token is not None else os.environ.get("OMNI_API_TOKEN") or None
    res = asyncio.run(stream_with_retry(url, wave, max_wait_s=max_wait_s, notify=notify, realtime=realtime,
                                        token=token, frame_ms=frame_ms))
    audio = np.concatenate(res["audio"]) if res["audio"] else np.zeros(0, np.float32)
    if out_path is not None:
        import soundfile as sf
        sf.write(str(out_path), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    lat = res["latencies_ms"]
    return {"chunks": len(lat), "latency_ms_p50": _pct(lat, 50), "latency_ms_p90": _pct(lat, 90),
            "latency_ms_p99": _pct(lat, 99), "latency_ms_mean": round(float(np.mean(lat)), 3) if lat else None,
            "underruns": res["underruns"], "audio_in_s": round(wave.size / SAMPLE_RATE_HZ, 3),
            "audio_out_s": round(audio.size / SAMPLE_RATE_HZ, 3), "text": "".join(res["texts"]),
            "events": res["events"], "close_code": res["close_code"], "errors": res["errors"],
            "attempts": res["attempts"], "busy_wait_s": res["busy_wait_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8000/v1/duplex")
    ap.add_argument("--wav", required=True)
    ap.add_argument("--out", default="reply.wav")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="pace frames at real time (default)")
    mode.add_argument("--fast", dest="realtime", action="store_false", help="send as fast as possible")
    ap.add_argument("--token", default=None, help="API token (default $OMNI_API_TOKEN)")
    ap.add_argument("--frame-ms", type=float, default=20.0)
    ap.add_argument("--max-wait-s", type=float, default=60.0,
                    help="keep retrying a busy server (close 1013 / HTTP 503) for up to this long")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.wav):
        print(f"error: no such WAV file: {a.wav}", file=sys.stderr)
        return 2
    try:
        stats = stream_wav(a.url, a.wav, a.out, a.realtime, a.token, a.frame_ms, a.max_wait_s)
    except OSError as e:
        print(f"error: cannot connect to {a.url}: {e} (is `serve run serve_app/serve_config.yaml` up?)",
              file=sys.stderr)
        return 2
    print(f"reply: {a.out} ({stats['audio_out_s']} s), chunks {stats['chunks']}, latency p50 "
          f"{stats['latency_ms_p50']} ms p90 {stats['latency_ms_p90']} ms, underruns {stats['underruns']}, "
          f"close code {stats['close_code']}" + (f", server busy: {stats['errors'][0]['message']}"
                                                 if stats["close_code"] == 1013 else ""), file=sys.stderr)
    print(json.dumps(stats))
    return 0 if not stats["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
