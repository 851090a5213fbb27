"""Corpus readers on tiny generated corpora, and validation reason codes (no Ray)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from data_prep import sources as SRC
from data_prep.sources import fixtures as F
from data_prep.validate import Reject, validate_record
from omni.config import DataConfig, SourceConfig

DCFG = DataConfig(max_duration_s=5.0)


def _src(kind, path, name="c"):
    return SourceConfig(kind=kind, name=name, path=str(path))


def _load_all(kind, path, cfg=DCFG):
    out = {}
    for it in SRC.list_items(_src(kind, path)):
        try:
            out[it["key"]] = SRC.load_record(json.loads(json.dumps(it)), cfg)  # items survive JSON (Ray rows)
        except Reject as e:
            out[it["key"]] = e
    return out


def test_manifest_utterances_become_one_assistant_turn(tmp_path):
    m = F.make_manifest(tmp_path / "corpus", n=3, seconds=1.5)
    recs = _load_all("manifest", m)
    assert sorted(recs) == ["c-0000001", "c-0000002", "c-0000003"]
    for i, key in enumerate(sorted(recs)):
        r = recs[key]
        assert validate_record(r, DCFG) is None
        assert r["assistant"].dtype == np.float32 and len(r["assistant"]) == len(r["user"]) == 24000  # 1.5 s @ 16k
        assert not np.any(r["user"])
        (t,) = r["meta"]["turns"]
        assert t["speaker"] == "assistant" and (t["start_s"], t["end_s"]) == (0.0, 1.5)
        assert t["text"] == F.sentence(i) and t["emotion"] == ["neutral", "happy", "sad"][i]
        assert t["speaker_id"] == f"s{i % 2}" and r["meta"]["task"] == "utterance"
        # resampled 22.05k -> 16k keeps the tone's peak level
        assert abs(np.abs(r["assistant"]).max() - 0.5) < 0.02


def test_manifest_paths_cannot_escape_its_folder(tmp_path):
    root = tmp_path / "corpus"
    F.make_manifest(root, n=1)
    sf.write(tmp_path / "secret.wav", F.tone(1.0, 1), 22050)
    os.symlink(tmp_path / "secret.wav", root / "audio" / "link.wav")
    rows = [{"audio": "../secret.wav", "text": "a"}, {"audio": str(tmp_path / "secret.wav"), "text": "b"},
            {"audio": "audio/link.wav", "text": "c"}, {"audio": "audio/./u0000.wav", "text": "d"}]
    (root / "m2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs = _load_all("manifest", root / "m2.jsonl")
    codes = [r.code if isinstance(r, Reject) else "ok" for _, r in sorted(recs.items())]
    assert codes == ["path_outside_root", "path_outside_root", "path_outside_root", "ok"]


def test_librispeech_layout_and_orphan_audio(tmp_path):
    F.make_librispeech(tmp_path / "ls", speakers=2, utts=2, orphan=True)
    recs = _load_all("librispeech", tmp_path / "ls")
    assert sorted(recs) == ["c-100-10-0000", "c-100-10-0001", "c-100-10-9999", "c-101-10-0000", "c-101-10-0001"]
    orphan = recs.pop("c-100-10-9999")
    assert isinstance(orphan, Reject) and orphan.code == "missing_transcript"
    r = recs["c-101-10-0001"]
    assert r["meta"]["turns"][0]["text"] == F.sentence(101).upper()
    assert r["meta"]["turns"][0]["speaker_id"] == "101"
    assert len(r["assistant"]) == int(1.2 * 16000) and validate_record(r, DCFG) is None


def test_dailytalk_dialogues_alternate_speakers_on_one_timeline(tmp_path):
    F.make_dailytalk(tmp_path / "dt", dialogues=2, turns=3, seconds=1.0, bad_emotion=True)
    recs = _load_all("dailytalk", tmp_path / "dt")
    assert sorted(recs) == ["c-d0", "c-d1"]
    r = recs["c-d0"]
    turns = r["meta"]["turns"]
    assert [t["speaker"] for t in turns] == ["user", "assistant", "user"]
    assert [t["emotion"] for t in turns] == ["neutral", "happy", "sad"]  # none/happiness/sadness mapped
    gap = SRC.DAILYTALK_GAP_S
    assert [(t["start_s"], t["end_s"]) for t in turns] == [(0.0, 1.0), (1.0 + gap, 2.0 + gap),
                                                           (2.0 + 2 * gap, 3.0 + 2 * gap)]
    assert len(r["user"]) == len(r["assistant"]) == int((3.0 + 2 * gap) * 16000)
    # the assistant channel is silent while the user speaks, and the other way round
    u0, a1 = slice(0, 16000), slice(int((1 + gap) * 16000), int((2 + gap) * 16000))
    assert np.abs(r["user"][u0]).max() > 0.3 and not np.any(r["assistant"][u0])
    assert np.abs(r["assistant"][a1]).max() > 0.3 and not np.any(r["user"][a1])
    assert validate_record(r, DCFG) is None
    assert isinstance(recs["c-d1"], Reject) and recs["c-d1"].code == "unknown_emotion"


def test_stereo_dialogue_with_and_without_timings(tmp_path):
    F.make_stereo(tmp_path / "st", n=1, seconds=3.0, timings=True)
    r = _load_all("stereo_dialogue", tmp_path / "st")["c-conv0"]
    assert len(r["user"]) == 48000 and validate_record(r, DCFG) is None
    assert [(t["speaker"], t["emotion"]) for t in r["meta"]["turns"]] == [("user", "neutral"), ("assistant", "happy")]
    sf.write(tmp_path / "st" / "mono.wav", F.tone(1.0, 3), 16000)
    bad = _load_all("stereo_dialogue", tmp_path / "st")["c-mono"]
    assert isinstance(bad, Reject) and bad.code == "bad_record" and "2" in bad.detail


def test_stereo_dialogue_without_timings_takes_turns_from_silero_vad(tmp_path):
    """Real espeak-ng speech at known times on each channel (24 kHz file); a steady 200 Hz tone on the
    user channel afterwards is not a turn. Turns are found within one Silero window (32 ms) + its 30 ms pad."""
    from data_prep.synth.tts import get_tts
    from omni.vad import voiced_span

    tts, sr = get_tts("espeak"), 24000  # the process-wide engine (C statics)
    user = tts.synthesize("Could you tell me how the weather will be tomorrow?", voice="en-us+m3").wave
    asst = tts.synthesize("It will be sunny and warm all afternoon.", voice="en+f3").wave
    x = np.zeros((7 * sr, 2), np.float32)
    expect = []
    for ch, wave, at in ((0, user, 0.3), (1, asst, 0.6 + len(user) / 16000)):
        on, off = voiced_span(wave, 16000)
        w = sf_resample(wave, 16000, sr)
        i = int(at * sr)
        x[i:i + len(w), ch] = w
        expect.append((at + on, at + off))
    t = np.arange(sr) / sr
    x[int(5.5 * sr):int(6.5 * sr), 0] = 0.3 * np.sin(2 * np.pi * 200 * t)
    (tmp_path / "st").mkdir()
    sf.write(tmp_path / "st" / "conv.wav", x, sr)
    cfg = DCFG.model_copy(update={"max_duration_s": 10.0})
    r = _load_all("stereo_dialogue", tmp_path / "st", cfg)["c-conv"]
    turns = r["meta"]["turns"]
    assert r["meta"]["transcribed"] is False and [t["speaker"] for t in turns] == ["user", "assistant"]
    for turn, (a, b) in zip(turns, expect):
        assert abs(turn["start_s"] - a) < 0.1 and abs(turn["end_s"] - b) < 0.1, (turn, a, b)
        assert turn["text"] == ""
    assert validate_record(r, cfg) is None  # untranscribed turns are allowed (speech-only stages)


def sf_resample(wave, src_hz, dst_hz):
    import soxr
    return soxr.resample(wave, src_hz, dst_hz).astype(np.float32)


def test_reader_config_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SRC.list_items(_src("manifest", tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="needs data.sources"):
        SRC.list_items(SourceConfig(kind="librispeech", name="x"))


def test_validate_record_codes():
    sr = 16000
    base = {"key": "k", "user": np.zeros(sr, np.float32), "assistant": 0.1 * np.ones(sr, np.float32),
            "meta": {"turns": [{"speaker": "assistant", "text": "hi", "start_s": 0.0, "end_s": 1.0}]}}

    def code(**over):
        rec = {**base, **{k: v for k, v in over.items() if k in ("user", "assistant")}}
        rec["meta"] = {"turns": [{**base["meta"]["turns"][0], **over.get("turn", {})}]}
        reason = validate_record(rec, DataConfig())
        return reason.split(":")[0] if reason else None

    nan = base["assistant"].copy()
    nan[5] = np.inf
    assert code() is None
    assert code(assistant=nan) == "nan_inf"
    assert code(assistant=np.ones(sr, np.float32)) == "clipping"
    assert code(user=np.zeros(100, np.float32), assistant=np.zeros(100, np.float32)) == "duration"
    assert code(turn={"text": " "}) == "empty_transcript"
    assert code(turn={"emotion": "bored"}) == "unknown_emotion"
    assert code(turn={"end_s": 3.0}) == "bad_record"
