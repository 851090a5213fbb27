"""The Ray Serve application end to end: one local Serve instance for the whole module."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from jobs._common import free_port, start_local_ray
from serve_app.protocol import float_to_pcm16
from serve_app.tiny_export import build_tiny_export, demo_wave
from tests.serve_util import pcm_frames, ws_session

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-123"
pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ["RAY_AUTH_MODE"] = "disabled"           # explicit (see ENVIRONMENT.md)
    os.environ["OMNI_API_TOKEN"] = TOKEN                # inherited by the replica
    import ray
    from ray import serve

    from serve_app.app import build_app

    export = build_tiny_export(tmp_path_factory.mktemp("serve") / "export")
    port = free_port()
    start_local_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"model": str(export), "max_sessions_per_replica": 5, "idle_timeout_s": 3,
                             "max_frame_bytes": 16000, "max_session_s": 60}), name="omni", route_prefix="/")
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop("OMNI_API_TOKEN", None)


def _get(server, path, token=TOKEN):
    req = urllib.request.Request(f"http://{server}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read(), r.headers.get("content-type")


def _post(server, path, body: bytes, token=TOKEN, ctype="audio/wav"):
    req = urllib.request.Request(f"http://{server}{path}", data=body, method="POST",
                                 headers={"Content-Type": ctype})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# every session here authenticates with TOKEN unless a test says otherwise
_ws_session = functools.partial(ws_session, token=TOKEN)


def test_healthz_index_and_static(server):
    status, body, _ = _get(server, "/healthz", token=None)               # probes need no token
    h = json.loads(body)
    assert status == 200 and h["status"] == "ok" and h["auth"] is True
    assert h["stage"] == "full_duplex_3" and h["chunk_ms"] == 400.0 and h["warmup_ms"] > 0
    assert h["kv_window"] == 512                 # serve.kv_window unset: the export's train.seq_len
    # timing diagnostics; the start-up objects are frozen out of the garbage collector's scans
    assert h["gc"]["frozen"] > 100_000 and set(h["step_time_ms"]) == {"wall", "cpu", "runqueue", "blocked"}
    assert set(h["loop_lag_ms"]) == {"p50", "p99", "max", "samples"}
    status, body, ctype = _get(server, "/")
    assert status == 200 and "text/html" in ctype and b"/static/app.js" in body
    status, body, ctype = _get(server, "/static/worklet.js")
    assert status == 200 and b"registerProcessor('pcm16-capture'" in body
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(server, "/static/secret.py")
    assert e.value.code == 404


def test_ws_round_trip_with_client(server, tmp_path):
    from serve_app.client import stream_wav
    sf.write(tmp_path / "in.wav", demo_wave(3.0, seed=1), 16000)
    stats = stream_wav(f"ws://{server}/v1/duplex", tmp_path / "in.wav", tmp_path / "out.wav",
                       realtime=False, token=TOKEN)
    assert stats["close_code"] == 1000 and stats["errors"] == []
    assert stats["chunks"] == 7 and stats["events"]["stats"] == 7 and stats["events"]["done"] == 1
    out, sr = sf.read(tmp_path / "out.wav")
    assert sr == 16000 and out.size == 7 * 6400 and stats["audio_out_s"] == 2.8
    assert stats["latency_ms_p50"] is not None and stats["latency_ms_p50"] > 0


def test_auth_rejects_missing_or_wrong_token(server):
    events, _, code = asyncio.run(_ws_session(server, [], token=None, end=False))
    assert code == 1008 and events[-1]["type"] == "error" and "token" in events[-1]["message"]
    _, _, code = asyncio.run(_ws_session(server, [], query="?token=wrong", token=None, end=False))
    assert code == 1008
    events, _, code = asyncio.run(_ws_session(server, pcm_frames(0.5), query=f"?token={TOKEN}", token=None))
    assert code == 1000 and events[0]["type"] == "ready"
    buf = io.BytesIO()
    sf.write(buf, demo_wave(1.0), 16000, format="WAV", subtype="PCM_16")
    assert _post(server, "/v1/respond", buf.getvalue(), token=None)[0] == 401
    assert _post(server, "/v1/respond", buf.getvalue(), token="nope")[0] == 401


def test_respond_wav_and_raw_pcm(server):
    buf = io.BytesIO()
    sf.write(buf, demo_wave(1.5, seed=2), 22050, format="WAV", subtype="PCM_16")  # resampled server-side
    status, out = _post(server, "/v1/respond", buf.getvalue())
    assert status == 200 and set(out["style"]) == {"pitch", "speed", "emotion"}
    assert isinstance(out["text"], str) and out["sample_rate_hz"] == 16000
    audio, sr = sf.read(io.BytesIO(base64.b64decode(out["audio_wav_base64"])))
    assert sr == 16000 and abs(audio.size / 16000 - out["duration_s"]) < 1e-3
    raw = float_to_pcm16(demo_wave(1.0))
    assert _post(server, "/v1/respond", raw, ctype="application/octet-stream")[0] == 200
    status, err = _post(server, "/v1/respond", raw[:-1], ctype="application/octet-stream")
    assert status == 400 and "even" in err["error"]
    status, err = _post(server, "/v1/respond?sample_rate_hz=8000", raw, ctype="application/octet-stream")
    assert status == 400 and "16000" in err["error"]
    assert _post(server, "/v1/respond", b"", ctype="application/octet-stream")[0] == 400


def test_bad_frames_close_only_that_session(server):
    async def scenario():
        good = asyncio.create_task(_ws_session(server, pcm_frames(2.0, seed=3)))
        bad = await asyncio.gather(
            _ws_session(server, [b"\x00\x01\x02"], end=False),                     # odd byte count
            _ws_session(server, ["hello"], end=False),                             # text, not binary
            _ws_session(server, [b"\x00" * 20000], end=False),                     # > max_frame_bytes
            _ws_session(server, [], query="?sample_rate_hz=8000", end=False))      # wrong rate
        return await good, bad
    (events, audio, code), bad = asyncio.run(scenario())
    assert [b[2] for b in bad] == [1007, 1003, 1009, 1003]
    assert all(b[0][-1]["type"] == "error" for b in bad)
    assert code == 1000 and sum(e["type"] == "stats" for e in events) == 5 and audio == 5 * 6400 * 2
    time.sleep(0.5)
    assert json.loads(_get(server, "/healthz")[1])["sessions"] == 0        # state freed


def test_session_limits_idle_and_max_sessions(server):
    async def scenario():
        import websockets
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        held = [await websockets.connect(f"ws://{server}/v1/duplex", additional_headers=hdr) for _ in range(5)]
        for ws in held:
            assert json.loads(await ws.recv())["type"] == "ready"
        events, _, full = await _ws_session(server, [], end=False)        # 6th on a 5-session replica
        t0 = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(held[0].recv(), 10)                      # error event, then close
            await asyncio.wait_for(held[0].recv(), 10)
        idle_s = time.monotonic() - t0
        codes = [ws.close_code for ws in held[:1]]
        for ws in held:
            await ws.close()
        return full, events, codes, idle_s
    full, events, codes, idle_s = asyncio.run(scenario())
    assert full == 1013 and "full" in events[-1]["message"]
    assert codes == [4001] and idle_s < 6


def test_full_replica_refuses_at_once_and_the_client_retries(server):
    """Back-pressure: with every replica full (one replica of 5 here, at max_replicas) a new session
    is refused at once: error event 1013 with retry_after_ms, close 1013. The bundled client waits
    at least that long, retries, tells its caller, and is admitted once a session ends."""
    from serve_app.client import stream_with_retry

    async def scenario():
        import websockets
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        held = [await websockets.connect(f"ws://{server}/v1/duplex", additional_headers=hdr) for _ in range(5)]
        for ws in held:
            assert json.loads(await ws.recv())["type"] == "ready"
        t0 = time.monotonic()
        events, _, code = await _ws_session(server, [], end=False)
        refused_s = time.monotonic() - t0
        told, first_refusal = [], asyncio.Event()

        def notify(attempt, wait_s, busy):
            told.append((attempt, wait_s, busy.retry_after_ms))
            first_refusal.set()
        retry = asyncio.create_task(stream_with_retry(f"ws://{server}/v1/duplex", demo_wave(1.2, seed=5),
                                                      realtime=False, token=TOKEN, notify=notify, max_wait_s=60))
        await asyncio.wait_for(first_refusal.wait(), 30)
        for ws in held:                                      # sessions end: room again
            await ws.close()
        return events, code, refused_s, await asyncio.wait_for(retry, 90), told
    events, code, refused_s, res, told = asyncio.run(scenario())
    assert code == 1013 and events == [events[-1]] and events[-1]["type"] == "error"
    assert events[-1]["code"] == 1013 and events[-1]["retry_after_ms"] == 2000 and "full" in events[-1]["message"]
    assert refused_s < 10                                    # refused, not queued until a slot frees
    assert res["close_code"] == 1000 and res["errors"] == [] and res["attempts"] >= 2
    assert told[0][0] == 1 and told[0][2] == 2000 and told[0][1] >= 2.0     # waited >= the hint
    assert res["busy_wait_s"] >= 2.0 and len(res["latencies_ms"]) == 3


def _browser(tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    wav = tmp_path / "mic.wav"
    sf.write(wav, demo_wave(4.0, seed=4), 48000 // 3, subtype="PCM_16")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1000,800",
                 f"--user-data-dir={tmp_path / 'profile'}", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
                 "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_browser_page_streams_microphone(server, tmp_path):
    browser = _browser(tmp_path)
    try:
        browser.get(f"http://{server}/?token={TOKEN}&aec=0")
        browser.find_element("id", "start").click()
        deadline, s = time.time() + 25, {}
        while time.time() < deadline:
            s = browser.execute_script("return window.omniStats")
            if s["chunks"] >= 3 and s["audioMessages"] >= 2 and s["latenciesMs"]:
                break
            time.sleep(0.5)
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        out_dir = os.environ.get("OMNI_SCREENSHOT_DIR")
        if out_dir:
            shutil.copy(shot, Path(out_dir) / "serve_page.png")
        assert s["state"] == "connected", s
        assert s["framesSent"] > 50 and s["chunks"] >= 3 and s["audioMessages"] >= 2
        assert s["bytesReceived"] >= 2 * 6400 and s["lastError"] is None
        assert browser.find_element("id", "chunks").text == str(s["chunks"]) or s["chunks"] > 3
        assert shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_browser_page_waits_out_a_full_server(server, tmp_path):
    """Every replica full: the page says so, retries with backoff (the mic stays open) and
    connects once a session ends."""
    import threading
    held_up, release = threading.Event(), threading.Event()

    def hold(n):             # n sessions kept alive (20 ms of audio a second, under idle_timeout_s)
        async def main():
            import websockets
            held = [await websockets.connect(f"ws://{server}/v1/duplex",
                                             additional_headers={"Authorization": f"Bearer {TOKEN}"})
                    for _ in range(n)]
            for ws in held:
                assert json.loads(await ws.recv())["type"] == "ready"
            held_up.set()
            while not release.is_set():
                for ws in held:
                    await ws.send(b"\0" * 640)
                await asyncio.sleep(0.5)
            for ws in held:
                await ws.close()
        asyncio.run(main())

    holder = threading.Thread(target=hold, args=(5,), daemon=True)
    holder.start()
    assert held_up.wait(60)
    browser = _browser(tmp_path)
    try:
        browser.get(f"http://{server}/?token={TOKEN}&aec=0")
        browser.find_element("id", "start").click()
        deadline, s = time.time() + 30, {}
        while time.time() < deadline:
            s = browser.execute_script("return window.omniStats")
            if s["busyRetries"] >= 1:
                break
            time.sleep(0.2)
        status = browser.find_element("id", "status").text
        assert s["busyRetries"] >= 1 and s["closeCode"] == 1013 and s["retryInMs"] >= 2000, s
        assert "busy" in status and "retrying in" in status, status
        release.set()                                     # room again
        holder.join(30)
        deadline = time.time() + 60
        while time.time() < deadline:
            s = browser.execute_script("return window.omniStats")
            if s["state"] == "connected" and s["chunks"] >= 2:
                break
            time.sleep(0.5)
        assert s["state"] == "connected" and s["chunks"] >= 2 and s["lastError"] is None, s
    finally:
        release.set()
        browser.quit()
