"""Full-duplex timeline metrics on constructed timelines with known latencies, an interruption,
a backchannel and a false barge-in."""
import numpy as np
import pytest

from omni.metrics.duplex import (
    duplex_metrics,
    energy_segments,
    turn_taking_events,
    user_turns_from_meta,
    voiced_segments,
)


def _turn(s, e, expects=True, kind="turn"):
    return {"start_s": s, "end_s": e, "kind": kind, "expects_response": expects}


# 20 s conversation. User: U1 0-2, backchannel 3.0-3.3, U2 5-7, U3 9-10 (interrupts A2), U4 14-16.
# Assistant (predicted): A1 2.3-4.5 (0.3 s after U1), A2 7.5-9.6 (0.5 s after U2; stops 0.6 s after U3
# starts), A3 10.2-12 (0.2 s after U3), A4 15-17 (starts while U4 talks: a false barge-in; U4 missed).
USER = [_turn(0, 2), _turn(3.0, 3.3, False, "backchannel"), _turn(5, 7), _turn(9, 10), _turn(14, 16)]
ASSISTANT = [(2.3, 4.5), (7.5, 9.6), (10.2, 12.0), (15.0, 17.0)]


def test_events_known_latencies():
    ev = turn_taking_events(USER, ASSISTANT, max_stop_s=1.5)
    assert ev["response_latencies_s"] == pytest.approx([0.3, 0.5, 0.2])
    assert ev["missed"] == 1 and ev["opportunities"] == 4
    assert ev["interruptions"] == 1 and ev["stop_latencies_s"] == pytest.approx([0.6]) and ev["stopped"] == 1
    assert ev["false_barge_ins"] == 1 and ev["user_turns"] == 4       # the backchannel is no turn


def test_summary_figures():
    m = duplex_metrics([{"user_turns": USER, "assistant": ASSISTANT, "duration_s": 20.0}], max_stop_s=1.5)
    assert m["response_latency_p50_s"] == pytest.approx(0.3)
    assert m["response_latency_p90_s"] == pytest.approx(0.46)          # numpy linear: 0.3 + 0.8 * 0.2
    assert m["response_latency_mean_s"] == pytest.approx(1.0 / 3)
    assert m["stop_latency_p50_s"] == pytest.approx(0.6)
    assert m["response_rate"] == pytest.approx(3 / 4) and m["yield_rate"] == 1.0
    assert m["turn_taking_success_rate"] == pytest.approx((3 + 1) / (4 + 1))
    assert m["false_barge_in_rate"] == pytest.approx(1 / 4) and m["false_barge_ins_per_min"] == pytest.approx(3.0)
    # overlap: U3∩A2 0.6 + U4∩A4 1.0 + backchannel inside A1 0.3; speech union 7.3 + 8.1 - 1.9 = 13.5
    assert m["overlap_ratio"] == pytest.approx(1.9 / 20)
    assert m["silence_ratio"] == pytest.approx(6.5 / 20)


def test_slow_stop_is_not_a_yield_and_pooling():
    late = [(2.3, 4.5), (7.5, 11.0)]                   # keeps talking 2 s into U3
    ev = turn_taking_events(USER[:4], late, max_stop_s=1.5)
    assert ev["stop_latencies_s"] == pytest.approx([2.0]) and ev["stopped"] == 0
    a = {"user_turns": USER, "assistant": ASSISTANT, "duration_s": 20.0}
    b = {"user_turns": [_turn(0, 1)], "assistant": [(1.1, 2.0)], "duration_s": 4.0}
    m = duplex_metrics([a, b], max_stop_s=1.5)
    assert m["conversations"] == 2 and m["duration_s"] == 24.0
    assert sorted(m["response_latencies_s"]) == pytest.approx([0.1, 0.2, 0.3, 0.5])
    assert m["silence_ratio"] == pytest.approx((6.5 + 2.1) / 24)


def test_early_start_within_tolerance_and_absent_figures():
    ev = turn_taking_events([_turn(0, 2)], [(1.9, 3.0)], early_tolerance_s=0.2)
    assert ev["response_latencies_s"] == pytest.approx([-0.1]) and ev["false_barge_ins"] == 0
    # an assistant that never speaks: no latency, no interruption -> those keys are absent, not 0
    m = duplex_metrics([{"user_turns": [_turn(0, 2)], "assistant": [], "duration_s": 5.0}])
    assert "response_latency_p50_s" not in m and "yield_rate" not in m and "stop_latency_p50_s" not in m
    assert m["response_rate"] == 0.0 and m["turn_taking_success_rate"] == 0.0
    assert m["silence_ratio"] == pytest.approx(3 / 5) and m["overlap_ratio"] == 0.0


def test_bad_timelines():
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        duplex_metrics([{"user_turns": [], "assistant": [], "duration_s": 0}])
    with pytest.raises(ValueError, match="ends before it starts"):
        duplex_metrics([{"user_turns": [], "assistant": [(3.0, 1.0)], "duration_s": 5}])
    with pytest.raises(ValueError, match="no conversations"):
        duplex_metrics([])


def test_user_turns_from_meta():
    meta = {"turns": [
        {"speaker": "user", "start_s": 0.0, "end_s": 2.0},
        {"speaker": "user", "start_s": 2.5, "end_s": 3.0},                 # the user goes on: no reply expected
        {"speaker": "assistant", "start_s": 3.4, "end_s": 5.0},
        {"speaker": "user", "start_s": 4.0, "end_s": 4.3, "kind": "backchannel"},
        {"speaker": "user", "start_s": 6.0, "end_s": 7.0}]}
    got = user_turns_from_meta(meta)
    assert [t["expects_response"] for t in got] == [False, True, False, False]
    assert [t["kind"] for t in got] == ["turn", "turn", "backchannel", "turn"]


def test_energy_and_unit_segments():
    sr = 16000
    t = np.arange(sr) / sr
    wave = np.concatenate([np.zeros(sr), 0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(sr)]).astype(np.float32)
    assert np.allclose(energy_segments(wave, sr, offset_s=0.5), [(1.5, 2.5)])
    units = np.array([0, 0, 5, 5, 0, 5, 0, 0, 0, 0, 0, 7])
    # the 0.04 s gap (< min_gap_s 0.2) is merged; the 0.2 s gap is not
    assert np.allclose(voiced_segments(units, 0, 25.0), [(0.08, 0.24), (0.44, 0.48)])
