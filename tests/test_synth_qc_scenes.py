"""QC checks (with a pluggable ASR), scene generators and folder loaders, script diversity."""
import numpy as np
import pytest
import soundfile as sf

from data_prep.synth import generate_dialogue, scenes
from data_prep.synth.qc import run_qc, wer, whisper_asr
from data_prep.synth.scripts import TemplateWriter
from omni.config import SynthConfig
from omni.metrics.text import distinct_n

SR = 16000


@pytest.fixture(scope="module")
def record():
    return generate_dialogue(0, SynthConfig(scenarios=["chitchat"], interrupt_prob=0.0, backchannel_prob=0.0))


def test_wer_normalises_text():
    assert wer("Hello, there! It's 3 o'clock.", "hello there its three oclock") == 0.0
    assert wer("one two three four", "one two four") == 0.25
    assert wer("a b", "a b c d") == 1.0


def test_qc_passes_clean_and_rejects_with_reasons(record):
    ok = run_qc(record)
    assert ok["passed"] and ok["reasons"] == []
    clipped = dict(record, user=np.clip(record["user"] * 50, -1, 1).astype(np.float32))
    r = run_qc(clipped)
    assert not r["passed"] and any("user channel clipped" in x for x in r["reasons"])
    silent = dict(record, assistant=np.zeros_like(record["assistant"]))
    r = run_qc(silent)
    assert any("(assistant) speech level" in x for x in r["reasons"])
    meta = dict(record["meta"], turns=record["meta"]["turns"][:1])
    r = run_qc(dict(record, meta=meta), max_silence_ratio=0.3)
    assert any(x.startswith("silence ratio") for x in r["reasons"])
    r = run_qc(record, min_duration_s=100.0)
    assert any(x.startswith("duration") for x in r["reasons"])


def test_asr_filter_uses_pluggable_callable(record):
    turns = [t for t in record["meta"]["turns"] if t["kind"] == "turn"]
    heard = iter(t["spoken_text"] for t in turns)
    assert run_qc(record, asr=lambda w: next(heard), max_wer=0.05)["max_wer"] == 0.0
    r = run_qc(record, asr=lambda w: "completely different words", max_wer=0.05)
    assert not r["passed"] and "WER" in r["reasons"][0] and r["max_wer"] >= 0.8
    calls = []
    generate_dialogue(1, SynthConfig(qc_max_wer=0.05), asr=lambda w: calls.append(len(w)) or "x")
    assert calls and all(n > SR // 4 for n in calls)  # clean per-turn audio went to the ASR
    with pytest.raises(ValueError, match="qc_asr_path"):
        generate_dialogue(1, SynthConfig(qc_max_wer=0.05))
    with pytest.raises(FileNotFoundError, match="faster-whisper model folder"):
        whisper_asr("/nonexistent/whisper")


def test_procedural_scenes_levels_and_tags():
    rng = np.random.default_rng(0)
    for tag in scenes.EVENT_SYNTHS:
        x = scenes.synth_event(tag, rng)
        assert x.dtype == np.float32 and 0.3 * SR <= len(x) <= 3.5 * SR and abs(np.abs(x).max() - 0.5) < 1e-3, tag
    m = scenes.synth_music(3.0, rng, tempo_bpm=120, key="D", mode="minor", timbre="pluck")
    assert len(m) == 3 * SR and np.isfinite(m).all()
    for kind in scenes.NOISE_KINDS:
        n, k = scenes.synth_noise(1.0, rng, kind)
        assert k == kind and len(n) == SR
    speech = np.sin(np.arange(SR) / 10).astype(np.float32) * 0.3
    scaled = scenes.scale_to_snr(n, scenes.power(speech), 20.0)
    assert abs(10 * np.log10(scenes.power(speech) / scenes.power(scaled)) - 20.0) < 0.01


def test_clip_folders_musan_and_esc50(tmp_path):
    rng = np.random.default_rng(0)
    tone = (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    (tmp_path / "musan" / "noise" / "free-sound").mkdir(parents=True)
    sf.write(tmp_path / "musan/noise/free-sound/n1.flac", tone, 8000)
    wave, tag, path = scenes.pick_clip(str(tmp_path / "musan"), rng)
    assert tag == "free-sound" and len(wave) == SR  # resampled 8 kHz -> 16 kHz
    esc = tmp_path / "esc50"
    (esc / "audio").mkdir(parents=True)
    (esc / "meta").mkdir()
    sf.write(esc / "audio/1-100-A-0.wav", tone, 16000)
    sf.write(esc / "audio/1-200-A-30.wav", tone, 16000)
    (esc / "meta/esc50.csv").write_text("filename,fold,target,category\n1-100-A-0.wav,1,0,dog\n"
                                        "1-200-A-30.wav,1,30,door_wood_knock\n")
    assert scenes.pick_clip(str(esc / "audio"), rng, "knock")[2].endswith("1-200-A-30.wav")
    assert scenes.pick_clip(str(esc / "audio"), rng, "dog_bark")[2].endswith("1-100-A-0.wav")
    assert scenes.pick_clip(str(esc / "audio"), rng, "siren") is None
    cfg = SynthConfig(scenarios=["event"], events_dir=str(esc / "audio"), noise_dir=str(tmp_path / "musan"))
    for i in range(6):
        ev = generate_dialogue(i, cfg)["meta"]["events"]
        assert any(e["type"] == "noise" and e["source"].endswith("n1.flac") for e in ev)
        for e in ev:
            if e["tag"] in ("knock", "dog_bark"):
                assert e["source"].endswith(".wav")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scenes.list_clips(str(tmp_path / "missing"))


def test_template_scripts_are_diverse_and_valid():
    w = TemplateWriter()
    scripts = [w.write(np.random.default_rng([0, i]), ("chitchat", "emotion", "event", "music")[i % 4], 2 + i % 7)
               for i in range(400)]
    dialogues = [" ".join(t.text for t in s.turns) for s in scripts]
    assert len(set(dialogues)) == len(dialogues)  # no exact duplicates
    assert distinct_n(dialogues, 2) > 0.2 and distinct_n(dialogues, 3) > 0.33
    emotions = {t.emotion for s in scripts for t in s.turns}
    assert emotions == {"neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted"}
    assert {t.event for s in scripts for t in s.turns if t.event} == set(scenes.EVENT_SYNTHS)
