import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni.formats import Example
from omni.packing import (
    IGNORE,
    StreamingPacker,
    block_causal_mask,
    collate,
    pack_examples,
    packed_loss,
    pad_rows,
    padding_fraction,
    split_windows,
)


@st.composite
def example_sets(draw):
    out = []
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.integers(1, 70))
        ids = np.asarray(draw(st.lists(st.integers(1, 500), min_size=n, max_size=n)))
        mask = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        stream = np.asarray(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
        splits = sorted(set(draw(st.lists(st.integers(0, n - 1), max_size=5))))
        out.append(Example(ids, mask, stream, np.asarray(splits, np.int64)))
    return out


def _check_rows(examples, rows, seq_len):
    """Every token of every example lands exactly once, in order, with its labels and streams."""
    assert all(len(r[f]) == seq_len for r in rows for f in ("input_ids", "labels", "position_ids", "stream"))
    assert all(r["seq_lens"].sum() == seq_len and len(r["segments"]) == r["num_seqs"] for r in rows)
    got: dict[int, list] = {}
    for r in rows:
        off = 0
        for (src, s, e), n in zip(r["segments"], r["seq_lens"]):
            assert e - s == n and (r["position_ids"][off:off + n] == np.arange(n)).all()
            got.setdefault(int(src), []).append((int(s), int(e), *(r[f][off:off + n] for f in
                                                                   ("input_ids", "labels", "stream"))))
            off += n
        assert (r["labels"][off:] == IGNORE).all()
    assert sorted(got) == [j for j, ex in enumerate(examples) if len(ex)]
    for j, segs in got.items():
        ex = examples[j]
        segs.sort(key=lambda x: x[0])
        assert segs[0][0] == 0 and segs[-1][1] == len(ex) and all(a[1] == b[0] for a, b in itertools.pairwise(segs))
        for s, e, ids, labels, stream in segs:
            assert 0 < e - s <= seq_len and (ids == ex.input_ids[s:e]).all()
            if s and ex.strict_splits:
                assert s in ex.split_points, "full-duplex windows start at a chunk start"
            take = np.r_[ex.loss_mask[s + 1:e], False]
            assert (labels == np.where(take, np.r_[ex.input_ids[s + 1:e], 0], IGNORE)).all()
            assert (stream == np.where(take, np.r_[ex.stream[s + 1:e], 0], 0)).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example_sets(), st.integers(2, 64))
def test_packing_preserves_every_token_and_mask(examples, seq_len):
    rows = pack_examples(examples, seq_len, pad_id=0)
    _check_rows(examples, rows, seq_len)
    total = sum(len(ex) for ex in examples)
    assert sum(r["num_pad"] for r in rows) == len(rows) * seq_len - total
    assert padding_fraction(rows) == pytest.approx(1 - total / (len(rows) * seq_len))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(example_sets(), min_size=1, max_size=4), st.integers(8, 64), st.integers(1, 4))
def test_streaming_packer_preserves_tokens(pools, seq_len, max_open):
    packer = StreamingPacker(seq_len, max_open_rows=max_open, min_topup=4)
    rows = [r for pool in pools for r in packer.add(pool)] + packer.flush()
    _check_rows([ex for pool in pools for ex in pool], rows, seq_len)


def test_streaming_packer_fills_rows():
    rng = np.random.default_rng(0)
    exs = [Example(np.ones(n), np.ones(n, bool), np.zeros(n)) for n in rng.integers(50, 400, 300)]
    packer = StreamingPacker(512)
    rows = [r for i in range(0, 300, 16) for r in packer.add(exs[i:i + 16])] + packer.flush()
    per_pool = [r for i in range(0, 300, 16) for r in pack_examples(exs[i:i + 16], 512)]
    assert padding_fraction(rows) < 0.01 < padding_fraction(per_pool)


def test_split_windows_prefer_split_points():
    pts = np.array([0, 7, 14, 21])
    strict = Example(np.arange(25), np.ones(25, bool), np.zeros(25), split_points=pts, strict_splits=True)
    assert split_windows(strict, 10) == [(0, 7), (7, 14), (14, 21), (21, 25)]
    soft = Example(np.arange(25), np.ones(25, bool), np.zeros(25), split_points=np.array([0, 9, 14, 21]))
    assert split_windows(soft, 10, min_fill=0.8) == [(0, 9), (9, 19), (19, 25)]  # 14 would waste too much
    ex2 = Example(np.arange(25), np.ones(25, bool), np.zeros(25))
    assert split_windows(ex2, 10) == [(0, 10), (10, 20), (20, 25)]


def test_best_fit_packs_tightly():
    exs = [Example(np.ones(n), np.ones(n, bool), np.zeros(n)) for n in (6, 4, 5, 5, 3, 7)]
    rows = pack_examples(exs, 10)
    assert len(rows) == 3 and padding_fraction(rows) == 0.0
    assert all(len(r["segments"]) == 2 for r in rows)  # whole sequences, no cuts needed
    assert padding_fraction(pad_rows(exs, 10)) == pytest.approx(1 - 30 / 60)


def test_block_causal_mask_and_collate():
    m = block_causal_mask([[2, 3]], 5)[0, 0]
    allowed = (m == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    exs = [Example(np.arange(1, n + 1), np.ones(n, bool), np.full(n, 4)) for n in (3, 4)]
    b = collate(pack_examples(exs, 8), attention_mask=True)
    assert b["input_ids"].shape == (1, 8) and b["attention_mask"].shape == (1, 1, 8, 8)
    assert b["cu_seqlens"].tolist() == [0, 4, 7, 8] and b["num_pad"] == 1
    with pytest.raises(ValueError, match="no rows"):
        collate([])


def test_packed_loss_per_stream():
    b = {"labels": torch.tensor([[1, IGNORE, 2]]), "stream": torch.tensor([[3, 0, 4]])}
    logits = torch.zeros(1, 3, 5)
    logits[0, 0, 1] = 10.0  # confident and right on the text target
    loss, per = packed_loss(logits, b)
    assert set(per) == {"assistant_text", "assistant_speech"}
    assert per["assistant_text"] < 1e-3 and per["assistant_speech"] == pytest.approx(np.log(5), rel=1e-5)
    assert float(loss) == pytest.approx((per["assistant_text"] + per["assistant_speech"]) / 2, rel=1e-5)
