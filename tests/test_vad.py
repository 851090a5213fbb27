"""The one VAD module: Silero (as Full-Duplex-Bench scores) on real espeak-ng speech placed at known
times, tones and noise that must not count as speech, the energy option, the causal gate, and the
Full-Duplex-Bench metrics computed end to end on Silero."""
import json

import numpy as np
import pytest
import soundfile as sf

from omni import vad
from omni.metrics import fdb

SR = 16000
TOL_S = 0.1   # Silero decides per 32 ms window and pads segments by 30 ms


@pytest.fixture(scope="module")
def speech():
    """Two espeak-ng utterances (16 kHz) and their voiced spans (exact, from the clean TTS output)."""
    from data_prep.synth.tts import get_tts

    tts = get_tts("espeak")  # the process-wide engine: espeak-ng keeps state in C statics
    out = []
    for text, voice in (("Could you tell me the way to the station, please?", "en-us+m3"),
                        ("Of course, it is just two streets from here.", "en+f3")):
        w = tts.synthesize(text, voice=voice).wave
        out.append((w, vad.voiced_span(w, SR)))
    return out


def place(duration_s, parts):
    """Silence of ``duration_s`` with each ``(wave, at_s)`` added at ``at_s``."""
    x = np.zeros(int(duration_s * SR), np.float32)
    for w, at in parts:
        i = int(at * SR)
        x[i:i + len(w)] += w[: len(x) - i]
    return x


def test_silero_finds_speech_at_known_times_and_nothing_in_silence(speech):
    (a, (a_on, a_off)), (b, (b_on, b_off)) = speech
    x = place(10.0, [(a, 0.5), (b, 6.0)])
    truth = [(0.5 + a_on, 0.5 + a_off), (6.0 + b_on, 6.0 + b_off)]
    segs = vad.silero_segments(x, SR)
    # every segment lies inside an utterance; pauses of >= 100 ms inside one (after a comma) may split it,
    # so the segments of each utterance run from its onset to its offset
    for lo, hi in truth:
        mine = [(s, e) for s, e in segs if lo - TOL_S <= s and e <= hi + TOL_S]
        assert mine and abs(mine[0][0] - lo) < TOL_S and abs(mine[-1][1] - hi) < TOL_S, (segs, lo, hi)
    assert all(any(lo - TOL_S <= s and e <= hi + TOL_S for lo, hi in truth) for s, e in segs), segs
    assert sum(e - s for s, e in segs) > 0.8 * sum(hi - lo for lo, hi in truth)
    assert vad.silero_segments(np.zeros(3 * SR, np.float32), SR) == []
    # the same clip at 8 kHz: resampled to Silero's 16 kHz, the same speech in seconds
    import soxr
    segs8 = vad.silero_segments(soxr.resample(x, SR, 8000), 8000)
    assert abs(segs8[0][0] - segs[0][0]) < TOL_S and abs(segs8[-1][1] - segs[-1][1]) < TOL_S


def test_tones_and_noise_are_not_speech_to_silero_but_are_to_energy():
    t = np.arange(3 * SR) / SR
    rng = np.random.default_rng(0)
    for sig in (0.3 * np.sin(2 * np.pi * 200 * t), 0.3 * np.sin(2 * np.pi * 1000 * t),
                0.1 * rng.standard_normal(len(t))):
        x = place(5.0, [(sig.astype(np.float32), 1.0)])
        assert vad.silero_segments(x, SR) == []
        (s, e), = vad.energy_segments(x, SR)                       # the energy option counts any loud sound
        assert abs(s - 1.0) <= 0.02 and abs(e - 4.0) <= 0.02


def test_energy_segments_known_answers_and_back_end_choice():
    def tone(duration_s, spans):
        return place(duration_s, [(0.1 * np.sin(2 * np.pi * 200 * np.arange(int((b - a) * SR)) / SR).astype(np.float32),
                                   a) for a, b in spans])

    segs = vad.energy_segments(tone(5.0, [(1.0, 2.0), (3.0, 3.5)]), SR)
    assert [(round(s, 2), round(e, 2)) for s, e in segs] == [(1.0, 2.0), (3.0, 3.5)]
    assert vad.energy_segments(np.zeros(SR, np.float32), SR) == []
    assert vad.energy_segments(tone(2.0, [(0.5, 0.55)]), SR) == []                # 50 ms blip < min_speech_s
    assert len(vad.energy_segments(tone(3.0, [(0.5, 1.0), (1.1, 1.5)]), SR)) == 1  # 100 ms gap merged
    assert vad.speech_segments(tone(5.0, [(1.0, 2.0)]), SR, "energy") == vad.energy_segments(tone(5.0, [(1.0, 2.0)]), SR)
    with pytest.raises(ValueError, match="unknown VAD back-end 'webrtc': choose one of silero, energy"):
        vad.speech_segments(np.zeros(SR, np.float32), SR, "webrtc")


def test_voiced_span_and_the_causal_gate():
    x = place(2.0, [(0.5 * np.ones(int(0.5 * SR), np.float32), 0.7)])
    assert vad.voiced_span(x, SR) == pytest.approx((0.7, 1.2), abs=0.005)
    assert vad.voiced_span(np.zeros(SR, np.float32), SR) == (0.0, 1.0)          # silent: the whole clip
    gate = vad.EnergyGate(SR, frame_ms=20, threshold_dbfs=-45)
    pieces = np.split(x, [7, 333, 5000, 17777])                               # odd sizes: same frames as whole
    got = np.concatenate([gate.push(p) for p in pieces])
    assert len(got) == len(x) // 320
    np.testing.assert_array_equal(got, vad.frame_levels_db(x, SR, 20) > -45)
    assert got[35:60].all() and not got[:35].any() and not got[60:].any()


def _clip(root, task, name, ref, wave):
    d = root / task / name
    d.mkdir(parents=True)
    sf.write(d / "output.wav", wave, SR, subtype="PCM_16")
    (d / "metadata.json").write_text(json.dumps({"task": task, "reference": ref}))


def test_fdb_metrics_on_silero(speech, tmp_path):
    """A spoken reply 0.5 s after the user's turn: TOR 1, latency 0.5 s; speech inside a pause: a
    takeover; a tone reply is silence to Silero (TOR 0), though the energy option calls it a turn."""
    (reply, (on, _)), _ = speech
    ref = {"user_start_s": 0.3, "user_end_s": 3.0}
    _clip(tmp_path / "a", "smooth_turn_taking", "t0", ref, place(8.0, [(reply, 3.5 - on)]))
    _clip(tmp_path / "a", "pause_handling", "p0", {"user_start_s": 0.3, "user_end_s": 6.0},
          place(8.0, [(reply, 1.0 - on)]))
    r = fdb.fdb_report(tmp_path / "a")
    assert r["tasks"]["smooth_turn_taking"]["tor"] == 1.0
    assert r["tasks"]["smooth_turn_taking"]["latency_s"] == pytest.approx(0.5, abs=TOL_S)
    assert r["tasks"]["pause_handling"]["tor"] == 1.0
    t = np.arange(2 * SR) / SR
    _clip(tmp_path / "b", "smooth_turn_taking", "t0", ref,
          place(8.0, [((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 3.5)]))
    assert fdb.fdb_report(tmp_path / "b")["tasks"]["smooth_turn_taking"]["tor"] == 0.0
    assert fdb.fdb_report(tmp_path / "b", vad="energy")["tasks"]["smooth_turn_taking"]["tor"] == 1.0
