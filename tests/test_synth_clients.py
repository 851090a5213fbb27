"""OpenAI-compatible script writer and /v1/audio/speech client against a local stub server."""
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from data_prep.synth.llm import OpenAIWriter, ScriptRejected, parse_script
from data_prep.synth.tts import OpenAITTS

GOOD = {"scenario": "chitchat", "topic": "weekend", "turns": [
    {"speaker": "user", "text": "Any plans for the weekend?", "emotion": "happy"},
    {"speaker": "assistant", "text": "Maybe a walk by the lake.", "pitch": "high"}]}
OFF_SCHEMA = {"scenario": "chitchat", "turns": [{"speaker": "assistant", "text": "Hi."},
                                                {"speaker": "user", "text": "Hello."}]}


class Stub:
    """Answers are taken from ``plan[scenario]`` (a list consumed in order, last one repeats)."""

    def __init__(self):
        self.plan, self.calls, self.inflight, self.max_inflight = {}, [], 0, 0
        self.lock = threading.Lock()
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.calls.append((self.path, body, self.headers.get("Authorization")))
                    stub.inflight += 1
                    stub.max_inflight = max(stub.max_inflight, stub.inflight)
                try:
                    if self.path.endswith("/audio/speech"):
                        key = "tts"
                    else:
                        key = body["messages"][1]["content"].split()[1]
                    with stub.lock:
                        steps = stub.plan[key]
                        step = steps.pop(0) if len(steps) > 1 else steps[0]
                    kind, val = step
                    if kind == "sleep":
                        time.sleep(val)
                        kind, val = "content", json.dumps(GOOD)
                    if kind == "status":
                        self.send_response(val)
                        self.end_headers()
                        return
                    if kind == "raw":
                        payload = val
                    else:
                        payload = json.dumps({"choices": [{"message": {"content": val}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with stub.lock:
                        stub.inflight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def stub():
    s = Stub()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _writer(stub, **kw):
    return OpenAIWriter(stub.url, "stub-model", api_key="k", backoff_s=0.01, **kw)


def test_good_answer_validated_and_request_shape(stub):
    stub.plan["chitchat"] = [("content", "```json\n" + json.dumps(GOOD) + "\n```")]
    script = _writer(stub).write("chitchat", 2, seed=5)
    assert [t.speaker for t in script.turns] == ["user", "assistant"] and script.turns[0].emotion == "happy"
    path, body, auth = stub.calls[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["seed"] == 5
    assert body["model"] == "stub-model" and body["response_format"] == {"type": "json_object"}


def test_malformed_and_off_schema_rejected_with_reasons_then_recovers(stub):
    stub.plan["chitchat"] = [("content", "Sure! Here is a dialogue: {"), ("content", json.dumps(OFF_SCHEMA)),
                             ("status", 503), ("content", json.dumps(GOOD))]
    w = _writer(stub, max_attempts=4)
    assert w.write("chitchat", 2).turns[1].text == "Maybe a walk by the lake."
    assert w.stats == {"requests": 4, "retries": 3, "rejected_answers": 2}
    stub.plan["chitchat"] = [("content", "not json"), ("content", json.dumps(OFF_SCHEMA)), ("status", 400)]
    with pytest.raises(ScriptRejected) as e:
        _writer(stub, max_attempts=5).write("chitchat", 2)
    r = e.value.reasons
    assert len(r) == 3 and "malformed JSON" in r[0] and "off-schema" in r[1] and "user first" in r[1]
    assert "HTTP 400" in r[2]  # a client error is not retried


def test_slow_answer_times_out_then_retry_succeeds(stub):
    stub.plan["chitchat"] = [("sleep", 1.0), ("content", json.dumps(GOOD))]
    w = OpenAIWriter(stub.url, "m", timeout_s=0.3, backoff_s=0.01, max_attempts=2)
    t0 = time.perf_counter()
    assert len(w.write("chitchat", 2).turns) == 2
    assert time.perf_counter() - t0 < 0.9 and w.stats["retries"] == 1


def test_write_many_bounded_concurrency_rate_limit_and_goes_on(stub):
    stub.plan["chitchat"] = [("sleep", 0.15)]
    stub.plan["event"] = [("content", "garbage")]
    w = _writer(stub, max_concurrency=2, max_attempts=1)
    jobs = [("chitchat", 2, i) for i in range(4)] + [("event", 2, 9)]
    scripts, rejects = w.write_many(jobs)
    assert all(s is not None for s in scripts[:4]) and scripts[4] is None
    assert rejects == [{"index": 4, "reasons": [rejects[0]["reasons"][0]]}] and "malformed" in rejects[0]["reasons"][0]
    assert stub.max_inflight == 2
    stub.plan["chitchat"] = [("content", json.dumps(GOOD))]
    w = _writer(stub, rate_per_s=20, max_concurrency=4)
    t0 = time.perf_counter()
    w.write_many([("chitchat", 2, i) for i in range(5)])
    assert time.perf_counter() - t0 >= 0.19  # 5 starts at 20/s need >= 4 intervals of 50 ms


def test_parse_script_checks_requested_scenario_and_turns():
    with pytest.raises(ValueError, match="asked for scenario 'music'"):
        parse_script(json.dumps(GOOD), "music")
    with pytest.raises(ValueError, match="asked for 4 turns"):
        parse_script(json.dumps(GOOD), "chitchat", 4)
    bad = dict(GOOD, turns=[dict(GOOD["turns"][0], emotion="ecstatic"), GOOD["turns"][1]])
    with pytest.raises(ValueError, match="off-schema: turns.0.emotion"):
        parse_script(json.dumps(bad), "chitchat")


def test_generate_dialogue_with_openai_writer(stub):
    from data_prep.synth import generate_dialogue
    from omni.config import SynthConfig
    stub.plan["chitchat"] = [("content", json.dumps(GOOD))]
    cfg = SynthConfig(writer="openai", llm_base_url=stub.url, llm_model="m", scenarios=["chitchat"],
                      min_turns=2, max_turns=2, interrupt_prob=0.0)
    rec = generate_dialogue(0, cfg)
    assert [t["text"] for t in rec["meta"]["turns"] if t["kind"] == "turn"] == [t["text"] for t in GOOD["turns"]]


def _wav_bytes(sr=24000, dur_s=0.5):
    buf = io.BytesIO()
    t = np.arange(int(sr * dur_s)) / sr
    sf.write(buf, 0.5 * np.sin(2 * np.pi * 220 * t), sr, format="WAV")
    return buf.getvalue()


def test_tts_client_resamples_retries_and_rejects_garbage(stub):
    stub.plan["tts"] = [("status", 500), ("raw", _wav_bytes())]
    tts = OpenAITTS(stub.url, model="tts-x", api_key="k", backoff_s=0.01)
    sp = tts.synthesize("hello there world", "nova", "happy", "high", "fast")
    assert sp.wave.dtype == np.float32 and abs(len(sp.wave) - 8000) <= 2 and sp.timing == "estimated"
    assert [w.text for w in sp.words] == ["hello", "there", "world"]
    assert sp.words[0].start_s < sp.words[1].start_s < sp.words[2].start_s < sp.words[2].end_s <= 0.5
    body = stub.calls[-1][1]
    assert body["voice"] == "nova" and body["speed"] == 1.3 and body["response_format"] == "wav"
    stub.plan["tts"] = [("raw", b"this is not audio")]
    with pytest.raises(ValueError, match="undecodable audio"):
        tts.synthesize("hi", "nova")
