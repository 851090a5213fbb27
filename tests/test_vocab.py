import json

import numpy as np
import pytest

from omni.config import EMOTIONS
from omni.vocab import SPECIALS, Vocab, VocabMismatchError


def test_layout_text_specials_units():
    v = Vocab(100, 16)
    assert v.size == 100 + len(SPECIALS) + 16 == 140
    assert v.special("pad") == 100 and v.special("eot") == 101 and v.special("text_pad") == 110
    assert v.special("emotion_disgusted") == v.unit_offset - 1
    assert v.unit(0) == v.unit_offset and v.unit(15) == v.size - 1
    assert v.new_token_ids == list(range(100, 140))
    assert len(SPECIALS) == 11 + 3 + 3 + len(EMOTIONS)


def test_specials_fixed_order():
    assert SPECIALS[:11] == ("pad", "eot", "asr", "tts", "text", "speech", "user_speech", "user_text",
                             "assistant_text", "assistant_speech", "text_pad")
    assert SPECIALS[11:17] == ("pitch_high", "pitch_normal", "pitch_low", "speed_fast", "speed_normal", "speed_slow")


def test_units_round_trip_and_predicates():
    v = Vocab(50, 8)
    u = np.array([0, 7, 3])
    ids = v.units_to_ids(u)
    assert ids.tolist() == [v.unit_offset, v.unit_offset + 7, v.unit_offset + 3]
    assert v.ids_to_units(ids).tolist() == u.tolist()
    probe = np.array([0, 49, 50, v.unit_offset, v.size - 1, v.size])
    assert v.is_text(probe).tolist() == [True, True, False, False, False, False]
    assert v.is_unit(probe).tolist() == [False, False, False, True, True, False]
    assert v.is_unit(v.unit_offset) is True


def test_bad_lookups_name_the_problem():
    v = Vocab(50, 8)
    with pytest.raises(KeyError, match="unknown special token 'nope'.*text_pad"):
        v.special("nope")
    with pytest.raises(ValueError, match="speech unit 8 out of range"):
        v.units_to_ids(np.array([1, 8]))
    with pytest.raises(ValueError, match="speech unit -1"):
        v.unit(-1)
    with pytest.raises(ValueError, match="is not a speech unit"):
        v.ids_to_units([3])
    with pytest.raises(ValueError, match="integers"):
        v.units_to_ids(np.array([1.5]))


def test_json_save_load(tmp_path):
    v = Vocab(300, 64)
    assert Vocab.from_json(v.to_json()) == v
    p = v.save(tmp_path)
    assert p.name == "vocab.json"
    assert Vocab.load(tmp_path) == v


def test_check_compatible_and_tampered_json(tmp_path):
    v = Vocab(300, 64)
    v.check_compatible(Vocab(300, 64))
    with pytest.raises(VocabMismatchError, match="checkpoint vocab layout differs: .*num_units 32"):
        v.check_compatible(Vocab(300, 32))
    obj = v.to_json()
    obj["specials"] = obj["specials"][::-1]
    (tmp_path / "vocab.json").write_text(json.dumps(obj))
    with pytest.raises(VocabMismatchError, match="layout differs: specials"):
        Vocab.load(tmp_path)
