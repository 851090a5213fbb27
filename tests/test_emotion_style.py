"""Emotion you can hear: the emotion-to-style mapping is deterministic and audible in pitch/energy/
rhythm statistics beyond the spread across voices, for both backends; the ceiling classifier
separates what is separable and stays at chance on shuffled labels."""
from itertools import combinations

import numpy as np
import pytest

from data_prep.synth import emotion_ceiling as EC
from data_prep.synth import piper_tts
from data_prep.synth.prosody import EMOTION_CUES
from data_prep.synth.tts import get_tts, style_params
from omni.config import EMOTIONS

TEXT = "I went to the market this morning and bought some apples for the week."
KEY = ("f0_mean_st", "f0_range_st", "f0_slope_st_per_s", "energy_mean_db", "syllable_rate_hz", "pause_fraction",
       "f0_vibrato_index", "energy_tremolo_index")
VOICES = {"espeak": ("en-us+m3", "en+f3", "en+m1"), "piper": ("joe", "joe-bright", "joe-deep")}


def test_style_mapping_is_deterministic_and_distinct_per_emotion():
    # the tables themselves: every emotion gets its own parameters on each backend (for every Piper
    # voice), and the same request always maps to the same parameters
    esp = {e: (tuple(sorted(style_params(e).items())), EMOTION_CUES[e]) for e in EMOTIONS}
    assert len(set(esp.values())) == len(EMOTIONS)
    assert esp == {e: (tuple(sorted(style_params(e).items())), EMOTION_CUES[e]) for e in EMOTIONS}
    for v in piper_tts.VOICES:
        pip = {e: tuple(sorted((k, x) for k, x in piper_tts.synthesis_params(v, e).items() if k != "emotion"))
               for e in EMOTIONS}
        assert len(set(pip.values())) == len(EMOTIONS), v  # different beyond the emotion's name
        assert pip == {e: tuple(sorted((k, x) for k, x in piper_tts.synthesis_params(v, e).items() if k != "emotion"))
                       for e in EMOTIONS}


@pytest.mark.parametrize("kind", ["espeak", "piper"])
def test_every_emotion_pair_differs_beyond_the_voice_spread(kind):
    tts = get_tts(kind)
    feats, raw = {}, {}
    for v in VOICES[kind]:
        rows = {e: EC.prosody_features(tts.synthesize(TEXT, v, e).wave) for e in EMOTIONS}
        raw[v] = rows
        mu = np.mean(list(rows.values()), axis=0)  # the voice's own habit (labels unused)
        for e, x in rows.items():
            feats.setdefault(e, []).append(x - mu)
    again = EC.prosody_features(tts.synthesize(TEXT, VOICES[kind][0], "fearful").wave)
    assert np.array_equal(again, raw[VOICES[kind][0]]["fearful"])  # same request, same statistics
    idx = [EC.FEATURES.index(f) for f in KEY]
    for e1, e2 in combinations(EMOTIONS, 2):
        a, b = np.array(feats[e1])[:, idx], np.array(feats[e2])[:, idx]
        # separated: the voices' values of one emotion all lie on one side of the other's, with a margin
        gap = np.maximum(a.min(0) - b.max(0), b.min(0) - a.max(0))
        spread = np.maximum(np.ptp(a, axis=0), np.ptp(b, axis=0))
        assert (gap > 0.5 * spread).any(), (kind, e1, e2, dict(zip(KEY, np.round(gap, 2))))


def test_synthesis_is_deterministic_per_request():
    for kind, v in (("espeak", "en+f3"), ("piper", "joe-soft")):
        tts = get_tts(kind)
        a = tts.synthesize(TEXT, v, "angry", "high", "fast").wave
        b = tts.synthesize(TEXT, v, "angry", "high", "fast").wave
        assert a.tobytes() == b.tobytes()


def test_ceiling_separates_separable_data_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    rows, y, spk, sen = [], [], [], []
    for v in range(6):
        offset = rng.normal(0, 3, size=4)  # each speaker's habit
        for s in range(8):
            for k, e in enumerate(EMOTIONS):
                centre = np.array([k, (k * 3) % 7, (k * 5) % 7, 0.0])
                rows.append(offset + centre + rng.normal(0, 0.3, size=4))
                y.append(e)
                spk.append(v)
                sen.append(s)
    X = np.array(rows)
    res = EC.ceiling(X, y, spk, sen, test_speakers=[4, 5], test_sentences=[6, 7], classifiers=("logreg",))
    assert res["macro_f1"] > 0.9 and res["test_rows"] == 2 * 2 * 7 and res["train_rows"] == 4 * 6 * 7
    assert 0.05 < res["baselines"]["stratified_random"] < 0.3 and res["baselines"]["majority"] < 0.1
    shuffled = list(rng.permutation(y))
    bad = EC.ceiling(X, shuffled, spk, sen, test_speakers=[4, 5], test_sentences=[6, 7], classifiers=("logreg",))
    assert bad["macro_f1"] < 0.45
    with pytest.raises(ValueError, match="empty split"):
        EC.ceiling(X, y, spk, sen, test_speakers=[9], test_sentences=[6])
