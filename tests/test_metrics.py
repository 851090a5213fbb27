"""Text, dialogue-text, style and judge metrics on fixed inputs with hand-computed results."""
import json
import math
import socket
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from omni.metrics import nlg
from omni.metrics.judge import judge_dialogues, parse_score
from omni.metrics.style import STYLE_LABELS, classification_report, style_metrics
from omni.metrics.text import (
    cer,
    error_rates,
    normalize,
    number_to_words,
    tts_intelligibility,
    wer,
)


# ------------------------------------------------------------------ normaliser, WER, CER
@pytest.mark.parametrize("raw, norm", [
    ("Hello, World!", "hello world"),
    ("I have 9 cats & 2 dogs.", "i have nine cats and two dogs"),
    ("It costs 1,000 dollars, 3.5%", "it costs one thousand dollars three point five percent"),
    ("the 21st of May, the 2nd, 3rd and 12th", "the twenty first of may the second third and twelfth"),
    ("Don't \"quote\" me", "don't quote me"),
    ("well-known 105 items", "well known one hundred five items"),
    ("  MIXED   case\tand\nspace ", "mixed case and space"),
])
def test_normalize(raw, norm):
    assert normalize(raw) == norm


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(40) == "forty"
    assert number_to_words(1_002_003) == "one million two thousand three"
    with pytest.raises(ValueError, match="0 .. 999999999999"):
        number_to_words(-1)


def test_wer_cer_hand_computed():
    assert wer(["the cat sat on the mat"], ["the cat sat on mat"]) == pytest.approx(1 / 6)
    assert wer(["I have 9 cats."], ["i have nine cats"]) == 0.0          # normalised before scoring
    assert cer(["abcd"], ["abed"]) == pytest.approx(1 / 4)
    r = error_rates(["a b c d", "e f"], ["a x c d z", "e"])
    assert (r["substitutions"], r["insertions"], r["deletions"]) == (1, 1, 1)
    assert r["wer"] == pytest.approx(3 / 6) and r["reference_words"] == 6


def test_wer_bad_input():
    r = error_rates(["", "hello world"], ["noise", "hello"])      # the empty reference is dropped, counted
    assert r["skipped_empty_references"] == 1 and r["wer"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="references are empty"):
        wer(["", " ,. "], ["a", "b"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="lists of sentences"):
        wer("a b", "a b")


def test_tts_intelligibility_hook():
    texts = ["turn on the light", "what time is it"]
    waves = [np.zeros(16000, np.float32), np.zeros(8000, np.float32)]
    heard = {16000: "turn on the lights", 8000: "what time is it"}   # an ASR that mishears one word
    r = tts_intelligibility(texts, waves, lambda w: heard[len(w)])
    assert r["wer"] == pytest.approx(1 / 8) and r["transcripts"] == ["turn on the lights", "what time is it"]
    with pytest.raises(ValueError, match="16 kHz"):
        tts_intelligibility(texts, waves, str, sample_rate_hz=22050)


# ------------------------------------------------------------------ BLEU, ROUGE-L, METEOR
def test_bleu_hand_computed():
    # n-gram precisions 5/6, 4/5, 3/4, 2/3; equal lengths (no brevity penalty): BLEU = (1/3)^(1/4)
    assert nlg.bleu(["a b c d e f"], ["a b c d e g"]) == pytest.approx(100 * (1 / 3) ** 0.25, abs=1e-6)
    assert nlg.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)


def test_rouge_l_hand_computed():
    # LCS 5 of 6/6 -> F 5/6; LCS 4, P 4/4, R 4/5 -> F 8/9; mean over sentences
    got = nlg.rouge_l(["the cat sat on the mat", "hello there how are you"],
                      ["the cat is on the mat", "hello how are you"])
    assert got == pytest.approx(100 * (5 / 6 + 8 / 9) / 2)


def test_meteor_hand_computed():
    # 5 exact matches of 6 (P = R = 5/6), 2 chunks: penalty 0.5 * (2/5)^3
    assert nlg.meteor(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(
        100 * 5 / 6 * (1 - 0.5 * 0.4 ** 3))
    # WordNet synonym ("quick"~"fast"): 3 matches in 1 chunk: penalty 0.5 * (1/3)^3
    assert nlg.meteor(["the fast one"], ["the quick one"]) == pytest.approx(100 * (1 - 0.5 / 27))


def test_meteor_without_wordnet_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_NLTK_DATA", str(tmp_path))
    with pytest.raises(nlg.MetricUnavailable, match="make wordnet"):
        nlg.meteor(["a"], ["a"])
    out = nlg.dialogue_text_metrics(["the cat sat"], ["the cat sat"], bertscore_model=str(tmp_path / "none"))
    assert isinstance(out["bleu"], float)     # the metrics that can run still run
    assert "make wordnet" in out["meteor"]["missing"] and "does not exist" in out["bertscore_f1"]["missing"]
    assert out["rouge_l"] == pytest.approx(100)


def test_text_metrics_bad_input():
    with pytest.raises(ValueError, match="lengths must match"):
        nlg.dialogue_text_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        nlg.bleu([""], ["something"])


@pytest.mark.slow
def test_bertscore_local_encoder():
    same = nlg.bertscore(["the weather is nice today"], ["the weather is nice today"])
    assert same["f1"] == pytest.approx(100, abs=1e-3)
    close = nlg.bertscore(["the weather is nice today"], ["today the weather is lovely"])["f1"]
    far = nlg.bertscore(["the weather is nice today"], ["my tax return is overdue"])["f1"]
    assert 100 > close > far > 0
    # recall of a hypothesis that covers half the reference is lower than its precision
    half = nlg.bertscore(["open the door and close the window"], ["open the door"])
    assert half["precision"] > half["recall"]
    # an empty hypothesis scores 0; the mean runs over all pairs
    assert nlg.bertscore(["hello there", "good day"], ["", "good day"])["f1"] == pytest.approx(50, abs=1e-3)


# ------------------------------------------------------------------ style
def test_style_f1_hand_computed():
    r = classification_report(["happy", "happy", "sad", "neutral"], ["happy", "sad", "sad", "Neutral"],
                              STYLE_LABELS["emotion"])
    # F1: happy 2/3 (P 1, R 1/2), sad 2/3 (P 1/2, R 1), neutral 1
    assert r["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx((1 * 1 + 2 * 2 / 3 + 1 * 2 / 3) / 4)
    assert r["accuracy"] == 0.75 and r["labels"][:3] == ["neutral", "happy", "sad"]
    cm = np.array(r["confusion"])
    assert cm.shape == (7, 7) and cm[1, 2] == 1 and cm[1, 1] == 1 and cm.sum() == 4


def test_style_metrics_per_key_and_missing():
    refs = [{"emotion": "happy", "pitch": "high"}, {"emotion": "sad", "pitch": "low"}]
    preds = [{"emotion": "happy", "pitch": "low"}, {"emotion": "sad", "pitch": "low"}]
    out = style_metrics(refs, preds)
    assert out["emotion"]["macro_f1"] == 1.0
    assert out["pitch"]["macro_f1"] == pytest.approx((0 + 2 / 3) / 2)    # high: 0, low: P 1/2 R 1
    assert "missing" in out["speed"]
    with pytest.raises(ValueError, match="lengths must match"):
        classification_report(["a"], [])


# ------------------------------------------------------------------ LLM judge
class _Judge(BaseHTTPRequestHandler):
    answers: typing.ClassVar[list] = []
    seen: typing.ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.seen.append((self.path, self.headers.get("Authorization"), body))
        content = _Judge.answers[(len(_Judge.seen) - 1) % len(_Judge.answers)]
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def judge_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Judge.seen = []
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_judge_against_stub(judge_server):
    _Judge.answers = ['{"score": 8, "reason": "good"}', "Score: 6.5", "I like it"]
    items = [{"context": "user: hi", "reference": "hello!", "response": f"hello {i}"} for i in range(3)]
    r = judge_dialogues(items, judge_server, model="judge-x", api_key="k")
    assert r["score_mean"] == pytest.approx((8 + 6.5) / 2) and r["judged"] == 2 and r["failed"] == 1
    path, auth, body = _Judge.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["model"] == "judge-x"
    assert "0 to 10" in body["messages"][0]["content"] and "hello 0" in body["messages"][1]["content"]


def test_judge_missing_never_zero(judge_server):
    with socket.socket() as s:          # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = judge_dialogues([{"response": "x"}], f"http://127.0.0.1:{port}/v1", timeout_s=2)
    assert set(r) == {"missing"} and "unreachable" in r["missing"]
    assert "no judge endpoint" in judge_dialogues([{"response": "x"}], None)["missing"]
    _Judge.answers = ["no idea"]
    assert "no usable score" in judge_dialogues([{"response": "x"}], judge_server)["missing"]
    with pytest.raises(ValueError, match="outside 0-10"):
        parse_score('{"score": 11}')
    assert not math.isnan(parse_score("score = 3"))
