"""A tiny OmniChat model that has learnt to hear two emotions, for serving tests.

``train_two_emotion_model(out_dir)`` voices a few sentences with espeak-ng in two emotions of
clearly different prosody (``sad``: low, slow, narrow pitch range, quiet; ``surprised``: high,
wide range), pairs each user utterance with an assistant reply whose style tags depend on the
user's emotion only, trains a tiny OmniChat model (prosody expert only, Mix-Former, tiny LLM
with LoRA) on them and exports it. The model is never told the emotion: it has to hear it. The
sentences in ``HELD_OUT`` are not in training: a test voices one of them in both emotions and
checks that the model answers them in different styles.
"""
from __future__ import annotations

import random

import numpy as np

SR = 16000
EMOTION_REPLY = {  # user emotion -> (assistant reply, assistant style)
    "sad": ("I am sorry to hear that.", {"emotion": "sad", "pitch": "low", "speed": "slow"}),
    "surprised": ("Wow, really?", {"emotion": "surprised", "pitch": "high", "speed": "normal"}),
}
TRAIN = ["I just came back from the station.", "My brother called me this morning.",
         "The shop on the corner closed today.", "We moved the meeting to Friday.",
         "There is a letter on the table.", "The garden looks different now."]
HELD_OUT = ["The bus was late again tonight."]
VOICE = "en-us+m3"


def _record(key: str, tts, tok, text: str, emotion: str) -> dict:
    wave = tts.synthesize(text, voice=VOICE, emotion=emotion).wave
    pad = np.zeros(int(0.1 * SR), np.float32)
    user = np.concatenate([pad, wave, pad, np.zeros(SR, np.float32)])
    end = 0.1 + len(wave) / SR
    reply, style = EMOTION_REPLY[emotion]
    turns = [{"kind": "turn", "speaker": "user", "start_s": 0.1, "end_s": end, "text": text,
              "text_ids": tok.encode(text), "emotion": emotion, "pitch": "normal", "speed": "normal"},
             {"kind": "turn", "speaker": "assistant", "start_s": end + 0.2, "end_s": end + 1.0, "text": reply,
              "text_ids": tok.encode(reply), **style}]
    return {"key": key, "meta": {"id": key, "source": "synthetic", "turns": turns, "voices": {"user": VOICE}},
            "user": user, "assistant": np.zeros_like(user), "source_name": "synthetic"}


def train_two_emotion_model(out_dir, tts, steps: int = 160, seed: int = 0) -> dict:
    """Train and export; returns {"export_dir", "train_accuracy", "steps"}."""
    import torch

    from omni.config import ModelConfig, OmniChatConfig
    from omni.model import build_model
    from omni.omnichat.data import turn_examples
    from omni.omnichat.model import OmniChatModel, save_omnichat
    from omni.omnichat.train import fit_plain
    from omni.text_tokenizer import TextTokenizer
    from omni.vocab import Vocab

    texts = TRAIN + HELD_OUT + [r for r, _ in EMOTION_REPLY.values()]
    tok = TextTokenizer.train(texts * 4, 300, seed=seed)
    vocab = Vocab(text_size=tok.vocab_size, num_units=16)
    recs = [_record(f"t{i}-{e}", tts, tok, s, e) for i, s in enumerate(TRAIN) for e in EMOTION_REPLY]
    oc = OmniChatConfig(experts=["para"], qformer_dim=32, qformer_heads=2, max_history_turns=0, max_new_tokens=24,
                        seed=seed, voice=VOICE)
    llm_cfg = ModelConfig(hidden_size=48, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=96, lora=True,
                          lora_rank=8)
    torch.manual_seed(seed)
    model = OmniChatModel(oc, build_model(llm_cfg, vocab, lora=False), vocab)
    exs = [e for r in recs for e in turn_examples(r, vocab, oc)]
    rng = random.Random(seed)

    def forever():
        while True:
            order = exs[:]
            rng.shuffle(order)
            yield from order
    fit = fit_plain(model, forever(), max_steps=steps, lr=3e-3, micro_batch=4)
    model.eval()
    from omni.omnichat.data import parse_response
    hits = sum(parse_response(model.generate(e.segments[:-1]), vocab)[1]["emotion"] == e.style["emotion"]
               for e in exs)
    save_omnichat(out_dir, model, tok, None, None, {"stage": "omnichat"})
    return {"export_dir": out_dir, "train_accuracy": hits / len(exs), "steps": fit["steps"], "loss": fit["loss"]}


def utterance(tts, text: str, emotion: str) -> np.ndarray:
    return tts.synthesize(text, voice=VOICE, emotion=emotion).wave
