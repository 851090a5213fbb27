import json

import numpy as np
import pytest
import torch

from omni.config import Config, ModelConfig
from omni.formats import Example
from omni.model import build_model, count_params, flops_per_token, load_export, save_export
from omni.packing import collate, model_inputs, pack_examples, packed_loss
from omni.text_tokenizer import TextTokenizer
from omni.vocab import Vocab, VocabMismatchError

torch.set_num_threads(1)
TEXTS = ["hello there how are you", "fine thanks and you", "the cat sat on the mat"] * 5


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(TEXTS, 280)


@pytest.fixture(scope="module")
def vocab(tok):
    return Vocab(tok.vocab_size, 32)


def _examples(vocab, lens, seed=0):
    rng = np.random.default_rng(seed)
    return [Example(rng.integers(0, vocab.size, n), rng.random(n) < 0.7, rng.integers(0, 5, n)) for n in lens]


def _alone_vs_packed(model, rows, batch, logits):
    diffs = []
    for r, row in enumerate(rows):
        off = 0
        for n in row["seq_lens"][:row["num_seqs"]]:
            ids = batch["input_ids"][r:r + 1, off:off + n]
            with torch.no_grad():
                alone = model(input_ids=ids).logits
            diffs.append(float((alone - logits[r:r + 1, off:off + n]).abs().max()))
            off += n
    return max(diffs)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("explicit_mask", [False, True])
def test_packed_logits_equal_alone(vocab, attn, explicit_mask):
    model = build_model(ModelConfig(), vocab).eval()
    model.set_attn_implementation(attn)
    assert model.config._attn_implementation == attn
    rows = pack_examples(_examples(vocab, [9, 5, 13, 7, 4]), 20)
    assert all(r["num_seqs"] >= 2 for r in rows[:1])
    b = collate(rows, attention_mask=explicit_mask)
    with torch.no_grad():
        logits = model(**model_inputs(b)).logits
    assert _alone_vs_packed(model, rows, b, logits) < 1e-4
    # the check can fail: without restarting positions and without a mask, sequences leak into each other
    with torch.no_grad():
        leaky = model(input_ids=b["input_ids"]).logits
    assert _alone_vs_packed(model, rows, b, leaky) > 1e-3


def test_tiny_build_seeded(vocab):
    a, b = build_model(ModelConfig(seed=1), vocab), build_model(ModelConfig(seed=1), vocab)
    c = build_model(ModelConfig(seed=2), vocab)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert wa.shape == (vocab.size, 64)
    assert a.omni_info["params"] == count_params(a) and a.omni_info["trainable_params"] == count_params(a)
    assert flops_per_token(a, seq_len=512) == 6 * count_params(a) + 12 * 2 * 64 * 512  # tied: N = all params


def _step(model, vocab, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    exs = _examples(vocab, [30, 20], seed=3)
    # make sure both old (text) and new (unit) ids appear as inputs and targets
    exs[0].input_ids[:10] = np.arange(10)
    exs[0].input_ids[10:20] = vocab.unit_offset + np.arange(10)
    exs[0].loss_mask[:] = True
    b = collate(pack_examples(exs, 64))
    loss, _ = packed_loss(model(**model_inputs(b)).logits, b)
    loss.backward()
    opt.step()
    opt.zero_grad()


def test_lora_trains_new_rows_only(vocab):
    model = build_model(ModelConfig(lora=True), vocab)
    assert model.omni_info["lora"] and model.omni_info["trainable_params"] < model.omni_info["params"] / 2
    emb = model.get_input_embeddings()
    text_ids, new_ids = torch.arange(vocab.text_size), torch.tensor(vocab.new_token_ids)
    with torch.no_grad():
        t0, n0 = emb(text_ids).clone(), emb(new_ids).clone()
    _step(model, vocab)
    with torch.no_grad():
        t1, n1 = emb(text_ids), emb(new_ids)
    assert torch.equal(t0, t1), "text (base) rows must stay frozen under LoRA"
    assert not torch.allclose(n0[vocab.unit_offset - vocab.text_size:][:10], n1[vocab.unit_offset - vocab.text_size:][:10])
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_A" in n)


@pytest.mark.parametrize("lora", [False, True])
def test_export_round_trip_identical_logits(vocab, tok, tmp_path, lora):
    model = build_model(ModelConfig(lora=lora), vocab)
    _step(model, vocab)
    model.eval()
    st_dir = tmp_path / "st"
    st_dir.mkdir()
    (st_dir / "tokenizer.json").write_text("{}")
    out = save_export(tmp_path / "exp", model, vocab, tok, st_dir, Config(), extra={"stage": "align"})
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "vocab.json", "text_tokenizer", "speech_tokenizer",
            "config.resolved.yaml", "export.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt"))]
    assert json.loads((out / "export.json").read_text())["extra"] == {"stage": "align"}
    exp = load_export(out, expect_vocab=vocab)
    assert not exp.model.training and exp.vocab == vocab and exp.config == Config()
    assert (exp.speech_tokenizer_dir / "tokenizer.json").is_file()
    x = torch.tensor([list(range(0, vocab.size, 7))])
    with torch.no_grad():
        assert torch.allclose(exp.model(input_ids=x).logits, model(input_ids=x).logits, atol=1e-5)
    if lora:
        assert hasattr(model, "get_base_model"), "save_export must not merge the caller's LoRA model in place"


def test_export_vocab_mismatch_and_pickles(vocab, tok, tmp_path):
    model = build_model(ModelConfig(), vocab)
    out = save_export(tmp_path / "exp", model, vocab, tok, None, None)
    with pytest.raises(VocabMismatchError, match="checkpoint vocab layout differs: .*num_units 32"):
        load_export(out, expect_vocab=Vocab(vocab.text_size, 64))
    with pytest.raises(VocabMismatchError, match="embedding rows"):
        save_export(tmp_path / "bad", model, Vocab(vocab.text_size, 64), tok, None, None)
    pk = tmp_path / "pickled"
    pk.mkdir()
    (pk / "export.json").write_text("{}")
    (pk / "config.json").write_text("{}")
    torch.save({}, pk / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        load_export(pk)
    with pytest.raises(ValueError, match="safetensors only"):
        build_model(ModelConfig(backbone="pretrained", path=str(pk)), vocab)


def test_pretrained_backbone_resized(vocab, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    base = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab.text_size + 5, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                        tie_word_embeddings=False))
    base.save_pretrained(tmp_path / "bb")
    model = build_model(ModelConfig(backbone="pretrained", path=str(tmp_path / "bb"), lora=True,
                                    lora_targets=["q_proj", "v_proj"]), vocab)
    plain = model.get_base_model()
    assert plain.get_input_embeddings().weight.shape[0] == vocab.size
    assert torch.equal(plain.get_input_embeddings().weight[:vocab.text_size].detach(),
                       base.get_input_embeddings().weight[:vocab.text_size].detach())
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_model(ModelConfig(backbone="pretrained", path=str(tmp_path / "missing")), vocab)
    with pytest.raises(VocabMismatchError, match="embedding rows"):
        build_model(ModelConfig(backbone="pretrained", path=str(tmp_path / "bb")), Vocab(vocab.text_size + 6, 32))
