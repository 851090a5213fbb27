"""Two-stage duplex decoding: 'speak or stay silent' weighs silence against all speech together."""
import math

import torch

from omni.duplex import Sampler


def _logits(p_null: float, n_other: int, null: int = 0) -> torch.Tensor:
    """One row: the null token has probability p_null, the rest is spread evenly over n_other
    tokens, with token 1 slightly ahead so argmax among them is well defined."""
    other = (1 - p_null) / n_other
    row = torch.full((n_other + 1,), math.log(other))
    row[null] = math.log(p_null)
    row[1] += 1e-3
    return row[None]


ALLOWED = torch.ones(1, 101, dtype=torch.bool)
GEN = [torch.Generator().manual_seed(0)]


def test_plain_argmax_never_speaks_when_speech_mass_is_spread():
    # silence 0.2, 0.8 spread over 100 units (0.008 each): plain argmax picks silence
    assert Sampler(0.0, 0, silence_threshold=1.0)(_logits(0.2, 100), ALLOWED, GEN, null=0) == [0]


def test_two_stage_speaks_when_silence_is_below_threshold():
    assert Sampler(0.0, 0, silence_threshold=0.5)(_logits(0.2, 100), ALLOWED, GEN, null=0) == [1]


def test_two_stage_stays_silent_when_silence_is_likely():
    assert Sampler(0.0, 0, silence_threshold=0.5)(_logits(0.6, 100), ALLOWED, GEN, null=0) == [0]


def test_two_stage_sampling_never_returns_null_when_speaking():
    s = Sampler(1.0, 0, silence_threshold=0.5)
    gens = [torch.Generator().manual_seed(i) for i in range(1)]
    picks = [s(_logits(0.45, 100), ALLOWED, gens, null=0)[0] for _ in range(200)]
    assert 0 not in picks and len(set(picks)) > 20


def test_without_null_the_sampler_is_plain():
    assert Sampler(0.0, 0, silence_threshold=0.5)(_logits(0.2, 100), ALLOWED, GEN) == [0]
