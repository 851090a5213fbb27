"""Flatten formats: identity of flatten/deflatten, loss masks, chunk timeline, bad input, goldens."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni.config import EMOTIONS, PITCHES, SPEEDS, StageConfig
from omni.formats import (
    STREAM_ASSISTANT_SPEECH,
    STREAM_ASSISTANT_TEXT,
    STREAM_USER_SPEECH,
    STREAM_USER_TEXT,
    Dialogue,
    Turn,
    align_pairs,
    deflatten_align,
    deflatten_full_duplex_2,
    deflatten_full_duplex_3,
    deflatten_half_duplex,
    flatten,
    flatten_align,
    flatten_full_duplex_2,
    flatten_full_duplex_3,
    flatten_half_duplex,
    flatten_rounds,
    half_duplex_rounds,
)
from omni.vocab import Vocab

GOLDEN = Path(__file__).parent / "golden"
VOCAB = Vocab(text_size=40, num_units=12)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def dialogues(draw, need_assistant=True):
    n = draw(st.integers(1, 60))
    user = np.asarray(draw(st.lists(st.integers(0, 11), min_size=n, max_size=n)))
    asst = np.asarray(draw(st.lists(st.integers(0, 11), min_size=n, max_size=n)))
    turns = []
    for _ in range(draw(st.integers(0, 6))):
        s = draw(st.integers(0, n))
        e = draw(st.integers(s, n))
        turns.append(Turn(speaker=draw(st.sampled_from(["user", "assistant"])),
                          text_ids=draw(st.lists(st.integers(0, 39), max_size=6)), start_frame=s, end_frame=e,
                          emotion=draw(st.sampled_from(EMOTIONS)), pitch=draw(st.sampled_from(PITCHES)),
                          speed=draw(st.sampled_from(SPEEDS)),
                          kind=draw(st.sampled_from(["turn", "turn", "backchannel"]))))
    if need_assistant:
        s = draw(st.integers(0, n - 1))
        turns.append(Turn("assistant", draw(st.lists(st.integers(0, 39), min_size=1, max_size=6)), s,
                          draw(st.integers(s + 1, n))))
    turns.sort(key=lambda t: (t.start_frame, t.end_frame))
    return Dialogue(turns, user, asst, silence_unit=draw(st.integers(0, 11)), key="h")


def _eq(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------------- align
@SETTINGS
@given(dialogues(need_assistant=False))
def test_align_identity_and_masks(d):
    pairs = align_pairs(d)
    if not pairs:
        with pytest.raises(ValueError, match="nothing to align"):
            flatten_align(d, VOCAB)
        return
    exs = flatten_align(d, VOCAB)
    assert len(exs) == len(pairs)
    for ex, p in zip(exs, pairs):
        back = deflatten_align(ex.input_ids, VOCAB)
        assert back.task == p.task and _eq(back.units, p.units) and _eq(back.text_ids, p.text_ids)
        assert back.style == p.style
        target = STREAM_USER_TEXT if p.task == "asr" else STREAM_ASSISTANT_SPEECH
        expect = ex.stream == target
        expect[-1] = True  # <eot>
        assert _eq(ex.loss_mask, expect)
    assert sum(p.task == "tts" for p in pairs) == sum(t.speaker == "assistant" and t.num_frames > 0 and len(t.text_ids) > 0
                                                      for t in d.turns)


# ------------------------------------------------------------------- half duplex
@SETTINGS
@given(dialogues(), st.booleans())
def test_half_duplex_identity_and_masks(d, user_text_loss):
    rounds = half_duplex_rounds(d)
    (ex,) = flatten_half_duplex(d, VOCAB, user_text_loss=user_text_loss)
    back = deflatten_half_duplex(ex.input_ids, VOCAB)
    assert len(back) == len(rounds)
    for a, b in zip(back, rounds):
        for f in ("user_units", "user_text", "assistant_text", "assistant_units"):
            assert _eq(getattr(a, f), getattr(b, f)), f
        assert a.style == b.style
    assert _eq(flatten_rounds(back, VOCAB, user_text_loss).input_ids, ex.input_ids)
    # the mask covers exactly the assistant sections <at> .. <eot> (+ <ut> T_u when asked)
    sp = VOCAB.special
    expect = np.zeros(len(ex), bool)
    for start in ex.split_points:
        at = start + np.flatnonzero(ex.input_ids[start:] == sp("assistant_text"))[0]
        eot = start + np.flatnonzero(ex.input_ids[start:] == sp("eot"))[0]
        expect[at:eot + 1] = True
        if user_text_loss:
            ut = start + np.flatnonzero(ex.input_ids[start:] == sp("user_text"))[0]
            expect[ut:at] = True
    assert _eq(ex.loss_mask, expect)
    assert not ex.loss_mask[ex.stream == STREAM_USER_SPEECH].any()
    assert ex.input_ids[-1] == sp("eot") and ex.input_ids[0] == sp("user_speech")


def test_half_duplex_merges_and_drops():
    u = np.arange(20) % 12
    turns = [Turn("assistant", [1], 0, 2), Turn("user", [2], 2, 5), Turn("assistant", [9], 5, 6, kind="backchannel"),
             Turn("user", [3], 6, 8), Turn("assistant", [4], 8, 10), Turn("assistant", [5, 6], 11, 13),
             Turn("user", [7], 14, 16)]
    rounds = half_duplex_rounds(Dialogue(turns, u, u, 0))
    assert len(rounds) == 2
    assert rounds[0].user_units.size == 0 and _eq(rounds[0].assistant_text, [1])  # leading assistant turn
    assert _eq(rounds[1].user_text, [2, 3]) and _eq(rounds[1].user_units, np.r_[u[2:5], u[6:8]])  # merged users
    assert _eq(rounds[1].assistant_text, [4, 5, 6]) and _eq(rounds[1].assistant_units, np.r_[u[8:10], u[11:13]])


# ------------------------------------------------------------------ full duplex
@SETTINGS
@given(dialogues(), st.integers(1, 4), st.integers(1, 12))
def test_full_duplex_3_identity_masks_and_timeline(d, text_chunk, speech_chunk):
    (ex,) = flatten_full_duplex_3(d, VOCAB, text_chunk, speech_chunk)
    width = 2 * speech_chunk + text_chunk
    n = len(ex) // width
    assert len(ex) == n * width and n >= -(-d.num_frames // speech_chunk)
    s = deflatten_full_duplex_3(ex.input_ids, VOCAB, text_chunk, speech_chunk)
    T = d.num_frames
    assert _eq(s.user_units[:T], d.user_units) and _eq(s.assistant_units[:T], d.assistant_units)
    assert (s.user_units[T:] == d.silence_unit).all() and (s.assistant_units[T:] == d.silence_unit).all()
    texts = [t.text_ids for t in d.turns if t.speaker == "assistant" and len(t.text_ids)]
    assert len(s.assistant_texts) == len(texts) and all(_eq(a, b) for a, b in zip(s.assistant_texts, texts))
    assert _eq(ex.loss_mask, np.isin(ex.stream, [STREAM_ASSISTANT_TEXT, STREAM_ASSISTANT_SPEECH]))
    # chunk i of every stream covers frames [i*c, (i+1)*c) of the shared timeline
    user_pad = np.r_[d.user_units, np.full(n * speech_chunk - T, d.silence_unit)]
    asst_pad = np.r_[d.assistant_units, np.full(n * speech_chunk - T, d.silence_unit)]
    for i in range(n):
        c = ex.input_ids[i * width:(i + 1) * width]
        assert _eq(VOCAB.ids_to_units(c[:speech_chunk]), user_pad[i * speech_chunk:(i + 1) * speech_chunk])
        assert _eq(VOCAB.ids_to_units(c[-speech_chunk:]), asst_pad[i * speech_chunk:(i + 1) * speech_chunk])
    # relaxed alignment: a turn's text starts in its start chunk, or right after the previous text ended
    slots = s.text_slots.ravel()
    pos, prev_end = 0, 0
    for t in (t for t in d.turns if t.speaker == "assistant" and len(t.text_ids)):
        want = max((t.start_frame // speech_chunk) * text_chunk, prev_end)
        assert _eq(slots[want:want + len(t.text_ids)], t.text_ids)
        assert (slots[pos:want] == VOCAB.special("text_pad")).all()
        assert slots[want + len(t.text_ids)] == VOCAB.special("eot")
        pos = prev_end = want + len(t.text_ids) + 1


@SETTINGS
@given(dialogues(), st.integers(1, 12))
def test_full_duplex_2_identity_and_masks(d, speech_chunk):
    (ex,) = flatten_full_duplex_2(d, VOCAB, speech_chunk)
    n = -(-d.num_frames // speech_chunk)
    assert len(ex) == 2 * speech_chunk * n
    s = deflatten_full_duplex_2(ex.input_ids, VOCAB, speech_chunk)
    assert _eq(s.user_units[:d.num_frames], d.user_units) and _eq(s.assistant_units[:d.num_frames], d.assistant_units)
    assert _eq(ex.loss_mask, ex.stream == STREAM_ASSISTANT_SPEECH)
    assert _eq(ex.split_points, np.arange(n) * 2 * speech_chunk)


# ------------------------------------------------------------------- bad input
def _rec(**over):
    rec = {"key": "r1", "meta": {"turns": [
        {"speaker": "user", "start_s": 0.0, "end_s": 0.4, "text_ids": [1, 2]},
        {"speaker": "assistant", "start_s": 0.4, "end_s": 0.8, "text_ids": [3], "emotion": "sad"}]},
        "user_units": np.arange(20) % 12, "assistant_units": np.zeros(20, np.int64)}
    rec.update(over)
    return rec


def test_from_record_frames_and_style():
    d = Dialogue.from_record(_rec(), frame_rate_hz=25.0, silence_unit=3)
    assert [(t.start_frame, t.end_frame) for t in d.turns] == [(0, 10), (10, 20)]
    assert d.turns[1].emotion == "sad" and d.silence_unit == 3 and d.key == "r1"


def test_bad_input_clear_errors():
    with pytest.raises(ValueError, match="speech unit 12 out of range"):
        flatten_full_duplex_2(Dialogue.from_record(_rec(user_units=np.full(20, 12))), VOCAB, 10)
    with pytest.raises(ValueError, match="speech unit 12 out of range"):
        flatten_full_duplex_3(Dialogue.from_record(_rec(), silence_unit=12), VOCAB, 2, 10)
    no_asst = _rec()
    no_asst["meta"]["turns"] = no_asst["meta"]["turns"][:1]
    d = Dialogue.from_record(no_asst)
    for stage in ("half_duplex", "full_duplex_3", "full_duplex_2"):
        with pytest.raises(ValueError, match="no assistant turn"):
            flatten(stage, d, VOCAB)
    assert len(flatten("align", d, VOCAB)) == 1  # ASR still possible
    with pytest.raises(ValueError, match="shorter than one frame"):
        Dialogue.from_record(_rec(user_units=np.zeros(0, np.int64), assistant_units=np.zeros(0, np.int64)))
    with pytest.raises(ValueError, match="run the tokenize step"):
        Dialogue.from_record(_rec(user_units=None))
    with pytest.raises(ValueError, match="equal length"):
        Dialogue.from_record(_rec(assistant_units=np.zeros(19, np.int64)))
    late = _rec()
    late["meta"]["turns"][1]["end_s"] = 2.0
    with pytest.raises(ValueError, match="timings and units disagree"):
        Dialogue.from_record(late)
    bad_style = _rec()
    bad_style["meta"]["turns"][1]["emotion"] = "bored"
    with pytest.raises(ValueError, match="emotion 'bored' unknown"):
        Dialogue.from_record(bad_style)
    big_text = _rec()
    big_text["meta"]["turns"][1]["text_ids"] = [40]
    with pytest.raises(ValueError, match="text id 40 outside the text range"):
        flatten_half_duplex(Dialogue.from_record(big_text), VOCAB)
    with pytest.raises(ValueError, match="unknown stage"):
        flatten("quarter_duplex", d, VOCAB)
    with pytest.raises(ValueError, match="not a positive multiple"):
        deflatten_full_duplex_3(np.arange(7) + VOCAB.unit_offset, VOCAB, 2, 10)
    empty_text = _rec()
    empty_text["meta"]["turns"][1]["text_ids"] = []
    with pytest.raises(ValueError, match="no assistant turn with speech and text"):
        flatten_half_duplex(Dialogue.from_record(empty_text), VOCAB)


# ---------------------------------------------------------------------- goldens
def golden_dialogue() -> Dialogue:
    """3.2 s at 25 Hz: user asks, assistant answers (happy), user backchannels, assistant continues."""
    rng = np.random.default_rng(1234)
    user = rng.integers(1, 12, 80)
    asst = rng.integers(1, 12, 80)
    user[30:], asst[:24] = 0, 0
    turns = [Turn("user", [5, 6, 7], 0, 22), Turn("assistant", [8, 9, 10, 11, 12], 24, 50, emotion="happy"),
             Turn("user", [13], 40, 44, kind="backchannel"), Turn("assistant", [14, 15], 52, 78, speed="fast")]
    return Dialogue(turns, user, asst, silence_unit=0, key="golden")


@pytest.mark.parametrize("stage", ["align", "half_duplex", "full_duplex_3", "full_duplex_2"])
def test_golden_sequences(stage):
    exs = flatten(stage, golden_dialogue(), VOCAB, StageConfig())
    got = [{"input_ids": e.input_ids.tolist(), "loss_mask": e.loss_mask.astype(int).tolist(),
            "stream": e.stream.tolist()} for e in exs]
    path = GOLDEN / f"{stage}.json"
    if os.environ.get("OMNI_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"vocab": VOCAB.to_json(), "examples": got}) + "\n")
    want = json.loads(path.read_text())
    assert want["vocab"] == VOCAB.to_json()
    assert got == want["examples"], f"{stage} flatten output changed; if intended, rerun with OMNI_UPDATE_GOLDEN=1"
