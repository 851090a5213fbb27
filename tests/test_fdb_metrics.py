"""Full-Duplex-Bench metric definitions on constructed timelines with known answers. Folder-level
tests score tones with ``vad="energy"`` (exact edges); Silero on real speech is in test_vad.py."""
import json
import math

import numpy as np
import pytest
import soundfile as sf

from omni.metrics import fdb

SR = 16000


def tone(duration_s: float, spans, amp: float = 0.1) -> np.ndarray:
    """Silence with a 200 Hz tone over each (start_s, end_s) span."""
    w = np.zeros(int(duration_s * SR), np.float32)
    for a, b in spans:
        i, j = int(a * SR), int(b * SR)
        w[i:j] = amp * np.sin(2 * np.pi * 200 * np.arange(j - i) / SR)
    return w


def test_takes_turn_rule_duration_or_words():
    assert fdb.takes_turn([(5.0, 5.5)], 0, 10) == (False, 5.0)              # 0.5 s: not a turn
    assert fdb.takes_turn([(5.0, 5.5), (6.2, 6.4)], 0, 10) == (True, 5.0)   # spans 1.4 s
    assert fdb.takes_turn([], 0, 10) == (False, None)
    four = [{"word": w, "start": 2 + 0.2 * i, "end": 2.15 + 0.2 * i} for i, w in enumerate(["a", "b", "c", "d"])]
    assert fdb.takes_turn([], 0, 10, words=four) == (True, 2.0)            # > 3 words in 0.75 s
    assert fdb.takes_turn([], 0, 10, words=four[:2]) == (False, 2.0)       # 2 words in 0.35 s
    assert fdb.takes_turn([(1, 9)], 0, 10, words=[]) == (False, None)      # words decide when given


def test_pause_handling_takeover_inside_user_turn_only():
    ref = {"user_start_s": 1.0, "user_end_s": 6.0, "pauses": [[3.0, 4.5]]}
    assert fdb.pause_handling_clip([(3.0, 4.5)], ref) == {"tor": 1}        # took the floor in the pause
    assert fdb.pause_handling_clip([(6.5, 8.0)], ref) == {"tor": 0}        # waited for the end of turn
    assert fdb.pause_handling_clip([(3.2, 3.6)], ref) == {"tor": 0}        # a short "mm" is no takeover


def test_smooth_turn_taking_latency():
    ref = {"user_start_s": 0.5, "user_end_s": 4.0}
    m = fdb.smooth_turn_taking_clip([(4.35, 6.0)], ref, 8.0)
    assert m["tor"] == 1 and m["latency_s"] == pytest.approx(0.35)
    assert fdb.smooth_turn_taking_clip([(4.2, 4.5)], ref, 8.0) == {"tor": 0, "latency_s": None}
    assert fdb.smooth_turn_taking_clip([(3.0, 6.0)], ref, 8.0)["latency_s"] == 0.0   # talked over the end


def test_backchannel_counts_frequency_and_jsd():
    ref = {"user_start_s": 0.5, "user_end_s": 10.0, "backchannels": [[2.0, 2.4], [5.0, 5.3]]}
    m = fdb.backchannel_clip([(2.0, 2.4), (5.0, 5.3)], ref, 10.0)
    assert m["tor"] == 0 and m["backchannels"] == 2
    assert m["freq_hz"] == pytest.approx(0.2)
    assert m["jsd"] == pytest.approx(0.0, abs=1e-6)                      # same timing as the reference
    far = fdb.backchannel_clip([(8.0, 8.3)], ref, 10.0)
    assert far["jsd"] == pytest.approx(math.sqrt(math.log(2)), abs=1e-3)  # disjoint: the maximum
    assert fdb.backchannel_clip([], ref, 10.0)["jsd"] == 1.0              # never backchannels
    long = fdb.backchannel_clip([(2.0, 2.4), (3.0, 6.5)], ref, 10.0)
    assert long["tor"] == 1 and long["backchannels"] == 1                 # > 3 s segment = takeover
    assert fdb.backchannel_clip([(2.0, 3.5)], ref, 10.0)["tor"] == 1      # 1.5 s without words: takeover
    words = [{"word": w, "start": 2.0 + 0.1 * i, "end": 2.08 + 0.1 * i} for i, w in enumerate(["so", "i", "think"])]
    assert fdb.backchannel_clip([(2.0, 2.4)], ref, 10.0, words=words)["tor"] == 1  # 3 words: not a backchannel


def test_js_distance_matches_scipy():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.random(30), rng.random(30)
        assert fdb.js_distance(p, q) == pytest.approx(float(jensenshannon(p, q)), abs=1e-9)


def test_user_interruption_stop_and_response_latency():
    ref = {"interrupt_start_s": 6.0, "interrupt_end_s": 8.0}
    m = fdb.user_interruption_clip([(3.0, 6.4), (8.5, 10.5)], ref, 12.0)
    assert m["tor"] == 1 and m["latency_s"] == pytest.approx(0.5)
    assert m["stop_latency_s"] == pytest.approx(0.4) and m["stopped"] == 1
    assert m["response_latency_s"] == pytest.approx(0.5)
    through = fdb.user_interruption_clip([(3.0, 9.0)], ref, 12.0)           # never yields
    assert through["stop_latency_s"] == pytest.approx(2.0) and through["stopped"] == 0
    assert through["response_latency_s"] is None
    silent = fdb.user_interruption_clip([], ref, 12.0)
    assert silent == {"tor": 0, "latency_s": None, "stop_latency_s": None, "stopped": None, "response_latency_s": None}


def test_v15_timing_overlaps_and_gaps():
    t = fdb.v15_timing([(1.0, 3.0), (6.0, 8.0)], [(0.0, 1.5), (3.4, 6.3), (8.2, 9.0)])
    assert t["stop"] == [(1.0, 1.5), (6.0, 6.3)]
    assert t["response"] == [(3.0, 3.4), (8.0, 8.2)]
    assert t["stop_latency_s"] == pytest.approx(0.4) and t["response_latency_s"] == pytest.approx(0.3)


def _clip(root, task, name, ref, duration_s, spans):
    d = root / task / name
    d.mkdir(parents=True)
    sf.write(d / "input.wav", np.zeros(int(duration_s * SR), np.float32), SR)
    sf.write(d / "output.wav", tone(duration_s, spans), SR, subtype="PCM_16")
    (d / "metadata.json").write_text(json.dumps({"task": task, "reference": ref}))


def test_fdb_report_on_folder(tmp_path):
    _clip(tmp_path, "pause_handling", "p0", {"user_start_s": 0.5, "user_end_s": 5.0}, 6.0, [(2.0, 3.5)])
    _clip(tmp_path, "pause_handling", "p1", {"user_start_s": 0.5, "user_end_s": 5.0}, 6.0, [])
    _clip(tmp_path, "smooth_turn_taking", "t0", {"user_start_s": 0.5, "user_end_s": 3.0}, 7.0, [(3.5, 5.5)])
    _clip(tmp_path, "user_interruption", "i0", {"interrupt_start_s": 4.0, "interrupt_end_s": 6.0}, 10.0,
          [(2.0, 4.3), (6.8, 8.5)])
    d = tmp_path / "x" / "fdb_layout"                                   # the benchmark's own metadata file
    d.mkdir(parents=True)
    sf.write(d / "output.wav", tone(8.0, [(5.3, 7.0)]), SR)
    (d / "interrupt.json").write_text(json.dumps([{"timestamp": [2.0, 5.0], "interrupt": "wait", "context": "hi"}]))
    r = fdb.fdb_report(tmp_path, vad="energy")
    assert r["tasks"]["pause_handling"] == {"clips": 2, "tor": 0.5}
    assert r["tasks"]["smooth_turn_taking"]["latency_s"] == pytest.approx(0.5, abs=0.03)
    ui = r["tasks"]["user_interruption"]
    assert ui["clips"] == 2 and ui["tor"] == 1.0
    assert ui["latency_s"] == pytest.approx((0.8 + 0.3) / 2, abs=0.03)
    assert ui["stop_latency_s"] == pytest.approx(0.3, abs=0.03) and ui["stop_latency_n"] == 1
    assert r["metrics"]["fdb/pause_handling/tor"] == 0.5
    assert r["row"]["pause_tor"] == 0.5 and r["row"]["backchannel_tor"] is None
    md = r["markdown"]
    assert "| Moshi (published) | 0.985 | 1.000 | 0.941 | 0.265 | 1.000 | 0.257 |" in md
    assert "| omni | 0.500 | n/a | 1.000 |" in md


def test_report_errors_are_actionable(tmp_path):
    with pytest.raises(FileNotFoundError, match="duplex_infer"):
        fdb.fdb_report(tmp_path)
    (tmp_path / "c").mkdir()
    sf.write(tmp_path / "c" / "output.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(FileNotFoundError, match="fdb_tasks"):
        fdb.fdb_report(tmp_path)


class FakeASR:
    """An omni.asr-style recogniser returning fixed Word objects."""

    def __init__(self, words, timed=True):
        from omni.asr import Word

        self.words = [Word(t, a if timed else None, b if timed else None) for t, a, b in words]

    def transcribe(self, audio, sample_rate_hz):
        return self.words


def test_transcripts_override_voice_activity(tmp_path):
    ref = {"user_start_s": 0.5, "user_end_s": 3.0}
    _clip(tmp_path, "smooth_turn_taking", "t0", ref, 7.0, [(3.5, 5.5)])
    assert fdb.fdb_report(tmp_path, vad="energy")["tasks"]["smooth_turn_taking"]["tor"] == 1.0  # VAD: a 2 s turn
    short = FakeASR([("oh", 3.5, 3.6), ("okay", 3.7, 3.9)])                                # words: 2 in 0.4 s
    r = fdb.fdb_report(tmp_path, asr=short, vad="energy")
    assert r["tasks"]["smooth_turn_taking"]["tor"] == 0.0 and r["transcripts"] is True
    full = FakeASR([(w, 3.6 + 0.3 * i, 3.8 + 0.3 * i) for i, w in enumerate(["well", "i", "think", "so"])])
    assert fdb.fdb_report(tmp_path, asr=full, vad="energy")["tasks"]["smooth_turn_taking"]["latency_s"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no word timings"):
        fdb.fdb_report(tmp_path, asr=FakeASR([("hi", 0, 0)], timed=False), vad="energy")


@pytest.mark.slow
def test_whisper_transcripts_time_a_spoken_reply(tmp_path):
    """Real path: espeak speech as the model's reply, Whisper base word timings."""
    asr = fdb.default_asr()
    if asr is None:
        pytest.skip("omni.asr.WhisperASR not installed (faster-whisper + whisper-base package)")
    from data_prep.synth.tts import get_tts

    sp = get_tts("espeak").synthesize("Sure, the weather will be sunny and warm all afternoon.", "en+f3")
    out = np.zeros(int(9.0 * SR), np.float32)
    at = int(4.0 * SR)
    out[at:at + len(sp.wave)] = sp.wave[: len(out) - at]
    onset = 4.0 + sp.words[0].start_s
    d = tmp_path / "smooth_turn_taking" / "t0"
    d.mkdir(parents=True)
    sf.write(d / "output.wav", out, SR, subtype="PCM_16")
    (d / "metadata.json").write_text(json.dumps({"task": "smooth_turn_taking",
                                                 "reference": {"user_start_s": 0.5, "user_end_s": 3.5}}))
    r = fdb.fdb_report(tmp_path, asr=asr)
    t = r["tasks"]["smooth_turn_taking"]
    assert t["tor"] == 1.0 and t["latency_s"] == pytest.approx(onset - 3.5, abs=0.25)
