"""``POST /v1/respond`` on an OmniChat export (issue 22): Ray Serve routes the utterance to the
OmniChat model, which answers text + style tags, voiced by the injected TTS in that style.

The served model is trained here (tests/omnichat_util.py: ~1-3 min on 2 cores) to hear two emotions
from the voice alone; one held-out sentence, voiced in both emotions, must come back in two
different styles. A model that ignores the audio answers both the same way and fails."""
from __future__ import annotations

import base64
import io
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from jobs._common import free_port, start_local_ray
from tests.omnichat_util import HELD_OUT, train_two_emotion_model, utterance

pytestmark = pytest.mark.slow
TTS_SPEC = "data_prep.synth.tts:get_tts"


@pytest.fixture(scope="module")
def tts():
    from data_prep.synth.tts import get_tts
    return get_tts("espeak")


@pytest.fixture(scope="module")
def export(tmp_path_factory, tts):
    import torch
    torch.set_num_threads(1)
    out = train_two_emotion_model(tmp_path_factory.mktemp("omnichat") / "export", tts)
    assert out["train_accuracy"] == 1.0, out  # it has learnt the training utterances' styles
    return out["export_dir"]


@pytest.fixture(scope="module")
def server(export):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray import serve

    from serve_app.app import build_app
    port = free_port()
    start_local_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"model": str(export), "tts": TTS_SPEC}), name="omni", route_prefix="/")
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _wav(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _post(server, body: bytes):
    req = urllib.request.Request(f"http://{server}/v1/respond", data=body, method="POST",
                                 headers={"Content-Type": "audio/wav"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_respond_answers_one_sentence_in_two_emotions_with_two_styles(server, export, tts):
    from omni.omnichat.data import parse_response
    from omni.omnichat.respond import Responder
    local = Responder(export, tts=None)  # the same export in this process: what the model predicts
    sentence = HELD_OUT[0]
    got = {}
    for emotion in ("sad", "surprised"):
        wave = utterance(tts, sentence, emotion)
        status, out = _post(server, _wav(wave))
        assert status == 200, out
        assert set(out["style"]) == {"emotion", "pitch", "speed"} and out["style_generated"] is True
        # the style the server returns is the model's own prediction for this audio (through WAV PCM16)
        pcm = sf.read(io.BytesIO(_wav(wave)), dtype="float32")[0]
        _, predicted, _ = parse_response(local.reply_ids(pcm), local.model.vocab)
        assert out["style"] == predicted
        # a WAV of the reply, voiced by the TTS in exactly that style
        audio, sr = sf.read(io.BytesIO(base64.b64decode(out["audio_wav_base64"])), dtype="float32")
        assert sr == out["sample_rate_hz"] == 16000 and out["text"]
        # duration_s is rounded to the millisecond (16 samples)
        assert abs(audio.size - out["duration_s"] * 16000) <= 8 and audio.size > 1600
        ref = tts.synthesize(out["text"], voice=local.model.oc.voice, **out["style"]).wave
        assert audio.size == ref.size and np.abs(audio - ref).max() < 2e-4  # PCM16 rounding only
        got[emotion] = out["style"]
    assert got["sad"] != got["surprised"], got
    assert got["sad"]["emotion"] == "sad" and got["surprised"]["emotion"] == "surprised", got


def test_omnichat_replica_reports_its_family_and_refuses_duplex(server):
    import asyncio

    import websockets
    with urllib.request.urlopen(f"http://{server}/healthz", timeout=30) as r:
        h = json.loads(r.read())
    assert h["status"] == "ok" and h["family"] == "omnichat" and h["duplex"] is False and h["tts"] == TTS_SPEC

    async def go():
        async with websockets.connect(f"ws://{server}/v1/duplex") as ws:
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            return e.value.rcvd.code
    from serve_app.protocol import CLOSE_UNSUPPORTED
    assert asyncio.run(go()) == CLOSE_UNSUPPORTED
    status, out = _post(server, b"")
    assert status == 400 and "empty body" in out["error"]


def test_omnichat_route_needs_a_tts(export):
    from omni.config import ConfigError
    from serve_app.omnichat_route import OmniChatRoute
    with pytest.raises(ConfigError, match="needs a TTS"):
        OmniChatRoute(export, None)
    with pytest.raises(ConfigError, match="MODULE:FACTORY"):
        OmniChatRoute(export, "data_prep.synth.tts")
    with pytest.raises(ConfigError, match="cannot be imported"):
        OmniChatRoute(export, "no_such_module_xyz:get_tts")
