"""SmolLM2-135M-Instruct as a real backbone (slow: a 135M-parameter model on CPU).

Uses the assembled cache folder (``make models``; assembled here on first use otherwise)."""
import time

import pytest
import torch

from omni.config import load_config
from omni.model import base_model, build_model
from omni.pretrained import smollm2_dir
from omni.text_tokenizer import TextTokenizer
from omni.vocab import Vocab

pytestmark = pytest.mark.slow
CONFIG = "configs/smollm2_135m.yaml"


def test_answers_a_fixed_prompt_deterministically():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d = smollm2_dir()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    hf_tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    # template as text, then tokenize (apply_chat_template(return_tensors=) misbehaves here)
    text = hf_tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                      tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([TextTokenizer.from_pretrained(d).encode(text)])
    assert ids.tolist() == hf_tok(text, return_tensors="pt").input_ids.tolist()  # same tokenizer either way
    outs = [model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:] for _ in range(2)]
    answer = hf_tok.decode(outs[0], skip_special_tokens=True)
    assert torch.equal(outs[0], outs[1])
    assert "Paris" in answer, answer
    print(f"load {load_s:.2f} s, answer {answer!r}")


def test_lora_step_lowers_loss_and_adapters_reload_identically(tmp_path):
    from peft import PeftModel
    cfg = load_config(CONFIG).model
    tok = TextTokenizer.from_pretrained(cfg.path)  # pretrained:smollm2-135m
    vocab = Vocab(tok.vocab_size, 128)
    assert vocab.text_size == 49152
    model = build_model(cfg, vocab)
    info = model.omni_info
    assert info["lora"] and info["vocab_size"] == vocab.size and info["trainable_params"] < info["params"] / 20
    plain = base_model(model)
    assert plain.get_input_embeddings().weight.shape[0] == vocab.size
    # tied embeddings kept tied: peft wraps both with one shared base weight and one delta
    assert plain.model.embed_tokens.token_adapter.base_layer.weight is plain.lm_head.token_adapter.base_layer.weight

    # a fixed batch mixing text and speech-unit ids (the new rows)
    g = torch.Generator().manual_seed(0)
    text_ids = torch.tensor([tok.encode("Hello, how are you today? I am fine, thank you.")])
    units = torch.randint(vocab.unit_offset, vocab.size, (1, 24), generator=g)
    ids = torch.cat([torch.tensor([[vocab.special("tts")]]), text_ids, torch.tensor([[vocab.special("speech")]]),
                     units, torch.tensor([[vocab.special("eot")]])], 1)
    new_rows = torch.tensor(vocab.new_token_ids)
    emb = plain.get_input_embeddings()
    with torch.no_grad():
        text_before = emb(torch.arange(0, 64)).clone()
        new_before = emb(new_rows).clone()
        loss0 = model(input_ids=ids, labels=ids).loss.item()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()
    with torch.no_grad():
        loss1 = model(input_ids=ids, labels=ids).loss.item()
        assert torch.equal(emb(torch.arange(0, 64)), text_before), "text rows must stay frozen"
        assert not torch.allclose(emb(new_rows), new_before), "new rows must train"
        logits = model(input_ids=ids).logits
        assert torch.equal(plain.lm_head.weight, emb.weight), "LM head must follow the trained input rows"
    print(f"loss {loss0:.3f} -> {loss1:.3f}")
    assert loss1 < loss0 - 0.05

    # the resized embedding itself is rebuilt identically by build_model (seeded): save LoRA + row deltas only
    model.save_pretrained(str(tmp_path / "adapters"), save_embedding_layers=False)
    size_mb = sum(p.stat().st_size for p in (tmp_path / "adapters").iterdir()) / 1e6
    assert size_mb < 10, f"adapters should be small, got {size_mb:.1f} MB"
    fresh = PeftModel.from_pretrained(build_model(cfg, vocab, lora=False), str(tmp_path / "adapters")).eval()
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, logits)
    merged = fresh.merge_and_unload()  # what save_export writes: still one tied matrix
    assert merged.get_input_embeddings().weight is merged.get_output_embeddings().weight
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, logits, atol=1e-4)
