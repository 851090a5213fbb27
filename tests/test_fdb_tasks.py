"""Full-Duplex-Bench-style task sets from the synthetic generator: layout and reference timings."""
import json

import numpy as np
import pytest
import soundfile as sf

from data_prep import fdb_tasks
from omni.vad import energy_segments

SR = 16000


def _voiced(wave, a_s, b_s):
    """Fraction of 20 ms frames in [a_s, b_s) above -45 dBFS (exact on the generator's own clips)."""
    segs = energy_segments(wave, SR, min_speech_s=0.0, merge_gap_s=0.0)
    grid = np.arange(a_s, b_s, 0.02)
    return float(np.mean([any(s <= t < e for s, e in segs) for t in grid])) if len(grid) else 0.0


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    out = tmp_path_factory.mktemp("fdb")
    assert fdb_tasks.main(["--out", str(out), "--per-task", "1", "--seed", "3"]) == 0
    return out


def _load(root, task):
    d = root / task / f"{task}_0000"
    wave, sr = sf.read(d / "input.wav", dtype="float32")
    assert sr == SR and wave.ndim == 1
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["task"] == task and meta["duration_s"] == pytest.approx(len(wave) / SR, abs=1e-3)
    return wave, meta["reference"], meta


def test_pause_handling_has_a_silent_pause_inside_the_turn(sets):
    wave, ref, _ = _load(sets, "pause_handling")
    (p0, p1), = ref["pauses"]
    assert ref["user_start_s"] < p0 and p1 < ref["user_end_s"] and 1.0 <= p1 - p0 <= 2.3
    assert _voiced(wave, p0 + 0.1, p1 - 0.1) < 0.2                       # the pause is silence
    assert _voiced(wave, ref["user_start_s"], p0) > 0.5                  # around it, speech
    assert _voiced(wave, p1, ref["user_end_s"]) > 0.5


def test_backchannel_slots_sit_in_gaps_of_a_long_monologue(sets):
    _wave, ref, meta = _load(sets, "backchannel")
    assert len(meta["user_turns"]) >= 3 and len(ref["backchannels"]) == len(meta["user_turns"]) - 1
    assert ref["user_end_s"] - ref["user_start_s"] > 5.0
    for (a, b), nxt in zip(ref["backchannels"], meta["user_turns"][1:]):
        assert b - a == pytest.approx(0.4) and a < nxt["start_s"]


def test_turn_taking_and_interruption_leave_room_to_respond(sets):
    wave, ref, _ = _load(sets, "smooth_turn_taking")
    assert len(wave) / SR - ref["user_end_s"] == pytest.approx(4.0, abs=0.01)
    assert _voiced(wave, ref["user_end_s"] + 0.3, len(wave) / SR) < 0.2   # only room noise after the turn
    wave, ref, _ = _load(sets, "user_interruption")
    assert 2.5 <= ref["interrupt_start_s"] - ref["context_end_s"] <= 4.1
    assert _voiced(wave, ref["interrupt_start_s"], ref["interrupt_end_s"]) > 0.5
    assert ref["interrupt_text"].split()[0].rstrip(",") in {"Sorry", "Wait", "Hold", "Actually", "Oh", "Hang"}


def test_clips_are_deterministic_and_errors_are_clear():
    a = fdb_tasks.make_clip("smooth_turn_taking", 2, seed=5)
    b = fdb_tasks.make_clip("smooth_turn_taking", 2, seed=5)
    np.testing.assert_array_equal(a["wave"], b["wave"])
    assert a["metadata"] == b["metadata"]
    with pytest.raises(ValueError, match="choose one of"):
        fdb_tasks.make_clip("karaoke", 0)
    with pytest.raises(SystemExit):
        fdb_tasks.main(["--out", "/tmp/x", "--tasks", "karaoke"])


def test_task_sets_use_a_held_out_seed_and_voice_family(sets):
    """The task sets are voiced by a family no training pool uses, with a seed no config trains on."""
    from data_prep.synth import voices as V
    from omni.config import SynthConfig, load_config

    for task in fdb_tasks.TASKS:
        assert _load(sets, task)[2]["voice"] in fdb_tasks.HELDOUT_VOICES
    trained = {v for b in ("espeak", "piper") for sp in ("user", "assistant") for v in V.pool(SynthConfig(), b, sp)}
    assert not trained & set(fdb_tasks.HELDOUT_VOICES)
    for path in ("configs/tiny.yaml", "configs/cpu_duplex.yaml"):
        fdb_tasks.check_held_out(fdb_tasks.HELDOUT_VOICES, fdb_tasks.HELDOUT_SEED, load_config(path).synth)
    duplex = load_config("configs/cpu_duplex.yaml").synth
    assert set(fdb_tasks.HELDOUT_VOICES) <= set(duplex.heldout_voices)
    V.check_voices(duplex)
    with pytest.raises(ValueError, match="voice training dialogues"):
        fdb_tasks.check_held_out(("en-us+m3",), fdb_tasks.HELDOUT_SEED, SynthConfig())
    with pytest.raises(ValueError, match="voice training dialogues"):  # a config that trains on the family
        fdb_tasks.check_held_out(fdb_tasks.HELDOUT_VOICES, 7, SynthConfig(user_voices=["en-us+m6"]))
    with pytest.raises(ValueError, match="training synth.seed"):
        fdb_tasks.check_held_out(fdb_tasks.HELDOUT_VOICES, 0, SynthConfig())
    with pytest.raises(SystemExit):
        fdb_tasks.main(["--out", "/tmp/x", "--voices", "en-us+m3", "--train-config", "configs/tiny.yaml"])
