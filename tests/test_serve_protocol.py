"""Serve-layer pieces without Ray: PCM16 codec, auth, origin, request bodies, build_app args."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from omni.config import ConfigError
from serve_app import protocol as P
from serve_app.app import resolve_settings
from serve_app.client import _underruns


def test_pcm16_round_trip_and_odd_bytes():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0], np.float32)
    data = P.float_to_pcm16(x)
    assert len(data) == 10
    y = P.pcm16_to_float(data)
    assert np.abs(y - x).max() <= 1 / 32768 + 1e-7
    with pytest.raises(P.ProtocolError) as e:
        P.pcm16_to_float(data[:-1])
    assert e.value.code == P.CLOSE_INVALID_PAYLOAD and "even" in e.value.message


def test_token_check():
    assert P.check_token(None, None, None)                               # no token configured
    assert P.check_token("Bearer abc", None, "abc")
    assert P.check_token(None, "abc", "abc")
    assert not P.check_token(None, None, "abc")
    assert not P.check_token("Bearer abd", None, "abc")
    assert not P.check_token("Basic abc", None, "abc")


def test_origin_check():
    assert P.origin_allowed(None, "h:1", None)                           # non-browser client
    assert P.origin_allowed("http://h:1", "h:1", None)                   # same origin
    assert not P.origin_allowed("http://evil:1", "h:1", None)
    assert P.origin_allowed("https://app.example", "h:1", ["https://app.example"])
    assert P.origin_allowed("http://any", "h:1", ["*"])


def test_audio_bodies():
    buf = io.BytesIO()
    sf.write(buf, np.zeros((8000, 2), np.float32), 8000, format="WAV")    # 1 s stereo 8 kHz
    wave = P.decode_audio_body(buf.getvalue(), "audio/wav", None, 60)
    assert wave.ndim == 1 and abs(wave.size - 16000) <= 2
    raw = P.float_to_pcm16(np.zeros(16000, np.float32))
    assert P.decode_audio_body(raw, "application/octet-stream", 16000, 60).size == 16000
    for body, sr, limit, status in [(b"", None, 60, 400), (raw[:-1], None, 60, 400), (raw, 8000, 60, 400),
                                    (raw, None, 0.5, 413), (raw[:100], None, 60, 400),
                                    (b"RIFFgarbage", None, 60, 400)]:
        with pytest.raises(P.ProtocolError) as e:
            P.decode_audio_body(body, None, sr, limit)
        assert e.value.code == status


def test_build_app_args(tmp_path):
    cfg, extras = resolve_settings({"model": str(tmp_path), "max_replicas": 3, "min_replicas": 0,
                                    "allowed_origins": "https://a,https://b"})
    assert cfg.serve.max_replicas == 3 and cfg.serve.min_replicas == 0 and cfg.serve.model == str(tmp_path)
    assert extras["allowed_origins"] == ["https://a", "https://b"]
    with pytest.raises(ConfigError, match="unknown build_app args"):
        resolve_settings({"model": str(tmp_path), "max_replica": 3})
    with pytest.raises(ConfigError, match="no model to serve"):
        resolve_settings({"overrides": [f"train.output_dir={tmp_path}"]})
    cfg, _ = resolve_settings({"model": "models:/omni@candidate"})
    assert cfg.serve.model == "models:/omni@candidate"


def test_deployment_options_map_the_serve_section(tmp_path):
    from serve_app.app import HTTP_HEADROOM, deployment_options
    cfg, extras = resolve_settings({"model": str(tmp_path), "min_replicas": 1, "max_replicas": 3,
                                    "target_sessions_per_replica": 2, "max_sessions_per_replica": 3,
                                    "max_session_s": 100})
    o = deployment_options(cfg.serve)
    assert o["autoscaling_config"]["target_ongoing_requests"] == 2          # one session = one request
    assert (o["autoscaling_config"]["min_replicas"], o["autoscaling_config"]["max_replicas"]) == (1, 3)
    assert o["max_ongoing_requests"] == 3 + HTTP_HEADROOM
    assert o["graceful_shutdown_timeout_s"] == 130                           # max_session_s + 30: drains
    assert o["request_router_config"]["request_router_class"] == "serve_app.routing:LeastLoadedRouter"
    assert extras["kv_window_set"] is False
    assert resolve_settings({"model": str(tmp_path), "kv_window": 256})[1]["kv_window_set"] is True
    with pytest.raises(ConfigError, match="target_sessions_per_replica"):      # full before scaling out
        resolve_settings({"model": str(tmp_path), "target_sessions_per_replica": 5, "max_sessions_per_replica": 4})
    with pytest.raises(ConfigError, match="min_replicas"):
        resolve_settings({"model": str(tmp_path), "min_replicas": 3, "max_replicas": 2})


def test_underrun_counter():
    # 400 ms of audio every 400 ms after a 100 ms prebuffer: no gap; a 600 ms stall: one
    steady = [(0.4 * i, 6400) for i in range(10)]
    assert _underruns(steady, 100) == 0
    stalled = steady[:5] + [(t + 0.6, n) for t, n in steady[5:]]
    assert _underruns(stalled, 100) == 1


def test_retry_backoff_grows_and_respects_the_hint():
    import random

    from serve_app.client import backoff_s
    rng = random.Random(0)
    waits = [backoff_s(k, None, rng=rng) for k in range(8)]
    assert all(min(30, 0.5 * 2 ** k) <= w <= 1.25 * min(30, 0.5 * 2 ** k) for k, w in enumerate(waits))
    assert max(waits) <= 37.5
    assert all(backoff_s(0, 4000, rng=rng) >= 4.0 for _ in range(20))
