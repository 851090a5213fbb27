import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from omni.text_tokenizer import TextTokenizer

TEXTS = ["Hello there, how are you today?", "I am fine, thank you very much!",
         "The weather is lovely and the birds are singing.", "Do you like music? I love jazz."] * 8


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(TEXTS, vocab_size=320, seed=0)


def test_train_round_trip_any_unicode(tok):
    assert 256 < tok.vocab_size <= 320
    for s in ["Hello there", "Zürich naïve 😀 — 東京", "  spaces\tand\nnewlines ", "UPPER lower"]:
        ids = tok.encode(s)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s
    assert tok.encode("") == []
    # merges learned: a frequent word is shorter than its byte count
    assert len(tok.encode("Hello there")) < len("Hello there")


def test_train_deterministic_and_validates():
    a = TextTokenizer.train(TEXTS, 300)
    b = TextTokenizer.train(TEXTS, 300)
    assert a.encode("how are the birds") == b.encode("how are the birds")
    with pytest.raises(ValueError, match="must be > 256"):
        TextTokenizer.train(TEXTS, 200)
    with pytest.raises(ValueError, match="no non-empty texts"):
        TextTokenizer.train(["", ""], 300)


def test_save_load(tok, tmp_path):
    tok.save(tmp_path / "t")
    back = TextTokenizer.load(tmp_path / "t")
    assert back.vocab_size == tok.vocab_size and back.kind == "bpe"
    assert back.encode("Zürich jazz") == tok.encode("Zürich jazz")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        TextTokenizer.load(tmp_path / "missing")


def test_from_pretrained_folder_and_unknown_chars(tmp_path):
    # a word-level "backbone" tokenizer with an unknown token: unencodable text must raise
    wl = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "bb").mkdir()
    wl.save(str(tmp_path / "bb" / "tokenizer.json"))
    t = TextTokenizer.from_pretrained(tmp_path / "bb")
    assert t.kind == "pretrained" and t.vocab_size == 3
    assert t.encode("hello world") == [1, 2]
    with pytest.raises(ValueError, match="cannot encode 'zebra'"):
        t.encode("hello zebra")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TextTokenizer.from_pretrained(tmp_path / "nope")
    meta = json.loads((t.save(tmp_path / "saved") / "text_tokenizer.json").read_text())
    assert meta["kind"] == "pretrained"


def test_from_pretrained_transformers_folder(tok, tmp_path):
    from transformers import PreTrainedTokenizerFast
    hf = PreTrainedTokenizerFast(tokenizer_object=tok._tok)
    hf.save_pretrained(tmp_path / "hf")
    t = TextTokenizer.from_pretrained(tmp_path / "hf")
    assert t.encode("how are you") == tok.encode("how are you")


def test_decode_rejects_out_of_range(tok):
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
