"""omni.metrics.duplex.talk_back on constructed replies: real speech (espeak-ng) placed at known
times, scored by Silero VAD. A silent reply, a reply over the user's turn, a late one and a blip fail."""
import numpy as np
import pytest

from omni.metrics.duplex import talk_back

SR = 16000


@pytest.fixture(scope="module")
def speech():
    from data_prep.synth.tts import get_tts
    wave = get_tts("espeak").synthesize("sure, the next train leaves at noon from platform four",
                                        voice="en-us+m3").wave
    assert wave.size / SR > 2.0
    return wave


def reply_at(speech, start_s, total_s=10.0, seconds=None):
    out = np.zeros(int(total_s * SR), np.float32)
    w = speech if seconds is None else speech[: int(seconds * SR)]
    out[int(start_s * SR): int(start_s * SR) + w.size] = w
    return out


def test_prompt_voiced_reply_is_answered(speech):
    r = talk_back(reply_at(speech, 4.5), SR, user_end_s=4.0)
    assert r["answered"], r
    assert 0.3 <= r["turn_start_after_end_s"] <= 0.8 and r["voiced_reply_s"] >= 1.5
    assert r["voiced_during_user_s"] <= 0.1


def test_silent_late_overlapping_and_blip_replies_fail(speech):
    silent = talk_back(np.zeros(10 * SR, np.float32), SR, user_end_s=4.0)
    assert not silent["answered"] and silent["turn_start_after_end_s"] is None and silent["voiced_reply_s"] == 0
    late = talk_back(reply_at(speech, 6.5), SR, user_end_s=4.0)
    assert not late["answered"] and late["turn_start_after_end_s"] > 1.5
    over = talk_back(reply_at(speech, 2.5), SR, user_end_s=4.0)
    assert not over["answered"] and over["voiced_during_user_s"] > 1.0
    blip = talk_back(reply_at(speech, 4.3, seconds=0.6), SR, user_end_s=4.0)
    assert not blip["answered"] and blip["voiced_reply_s"] < 1.5
