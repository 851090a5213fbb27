"""Packing collator: several flattened sequences per row, no attention across boundaries.

A row (``pack_examples``) is a dict of numpy arrays of length ``seq_len``:

- ``input_ids``: the tokens (``pad_id`` in the padding tail);
- ``labels``: *next-token* targets, already shifted: ``labels[i] = input_ids[i+1]`` when token
  i+1 is a loss token of the same sequence, else -100. Do **not** hand them to a Hugging
  Face model's ``labels=`` argument (it shifts again); use :func:`packed_loss`;
- ``position_ids``: 0, 1, ... restarting at every sequence (and for the padding tail);
- ``stream``: the stream code of the *target* token (see :mod:`omni.formats`), 0 where
  ``labels`` is -100;
- ``seq_lens``: segment lengths covering the row (the last one is the padding tail when
  ``num_pad > 0``): ``cu_seqlens`` for varlen attention; ``num_seqs`` real sequences.

Packing is best-fit decreasing: sequences sorted by length (stable), each put into the row
whose free space fits it most tightly; a row left with >= ``min_topup`` free tokens is topped
up with a sequence cut to fit (see :class:`StreamingPacker`; the cut-off rest becomes its own
sequence). Use :class:`StreamingPacker` for a stream of example pools: part-filled rows stay
open across pools (``benchmarks/packing.py``: padding 0.5-2.6 % per stage, vs. 1.7-8 % when
each pool of 32 examples is packed on its own). A sequence longer than ``seq_len`` is cut
into windows first (:func:`split_windows`): full-duplex examples only at chunk starts,
half-duplex ones at a round start when that wastes little, else hard at ``seq_len``. Every
window or cut-off part is trained as an independent sequence (positions restart; the target
that crossed the cut is dropped). ``row["segments"]`` says where each sequence came from.

Attention isolation: Hugging Face Qwen2/Llama in transformers >= 5 derive a block-diagonal
causal mask from restarting ``position_ids`` when ``attention_mask`` is None and no KV
cache is in use (call the model with ``use_cache=False``); flash-attention-2 uses the same
position ids as varlen. For any backend, :func:`collate` can also return an explicit 4-D
additive mask (``block_causal_mask``), which eager and sdpa both honour.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from omni.formats import STREAM_NAMES, Example

IGNORE = -100


def split_windows(ex: Example, seq_len: int, min_fill: float = 0.875) -> list[tuple[int, int]]:
    """[start, end) windows of at most ``seq_len`` tokens that tile ``ex``.

    ``ex.strict_splits`` (full-duplex chunks): cut only at split points (hard cut only when a
    single chunk exceeds ``seq_len``). Otherwise (half-duplex rounds) cut at the last split
    point that keeps the window at least ``min_fill * seq_len`` long, else hard at ``seq_len``.
    """
    n = len(ex)
    if n <= seq_len:
        return [(0, n)]
    splits = np.unique(ex.split_points[(ex.split_points > 0) & (ex.split_points < n)])
    out, start = [], 0
    while n - start > seq_len:
        lim = start + seq_len
        lowest = start if ex.strict_splits else start + max(1, int(min_fill * seq_len)) - 1
        k = bisect.bisect_right(splits, lim) - 1
        end = int(splits[k]) if k >= 0 and splits[k] > lowest else lim
        out.append((start, end))
        start = end
    out.append((start, n))
    return out


@dataclass(slots=True)
class _Piece:
    """A window of one example with its shifted labels; ``cuts``: allowed cut offsets (None: any)."""
    ids: np.ndarray
    labels: np.ndarray
    stream: np.ndarray
    cuts: np.ndarray | None
    source: int
    start: int

    def __len__(self) -> int:
        return len(self.ids)

    def cut(self, c: int) -> tuple[_Piece, _Piece]:
        labels, stream = self.labels[:c].copy(), self.stream[:c].copy()
        labels[-1], stream[-1] = IGNORE, 0  # its target now lies in the other part
        cuts = self.cuts
        head = _Piece(self.ids[:c], labels, stream, None if cuts is None else cuts[cuts < c], self.source, self.start)
        tail = _Piece(self.ids[c:], self.labels[c:], self.stream[c:],
                      None if cuts is None else cuts[cuts > c] - c, self.source, self.start + c)
        return head, tail

    def best_cut(self, limit: int) -> int:
        """Largest allowed cut offset in (0, limit]; 0 when there is none."""
        if self.cuts is None:
            return min(limit, len(self) - 1)
        ok = self.cuts[(self.cuts > 0) & (self.cuts <= limit)]
        return int(ok[-1]) if len(ok) else 0


def _pieces(examples: Sequence[Example], seq_len: int, first_index: int = 0) -> list[_Piece]:
    out = []
    for j, ex in enumerate(examples):
        if len(ex) == 0:
            continue
        splits = ex.split_points
        if ex.strict_splits:
            splits = np.unique(splits[(splits > 0) & (splits < len(ex))])
        for s, e in split_windows(ex, seq_len):
            ids, mask, stream = ex.input_ids[s:e], ex.loss_mask[s:e], ex.stream[s:e]
            labels = np.full(e - s, IGNORE, np.int64)
            tgt_stream = np.zeros(e - s, np.int64)
            take = mask[1:]
            labels[:-1][take] = ids[1:][take]
            tgt_stream[:-1][take] = stream[1:][take]
            cuts = splits[(splits > s) & (splits < e)] - s if ex.strict_splits else None
            out.append(_Piece(ids, labels, tgt_stream, cuts, first_index + j, s))
    return out


def pack_examples(examples: Sequence[Example], seq_len: int, pad_id: int = 0) -> list[dict]:
    """Pack ``examples`` into rows of ``seq_len`` tokens (see module docstring)."""
    packer = StreamingPacker(seq_len, pad_id, max_open_rows=None)
    return packer.add(examples) + packer.flush()


class StreamingPacker:
    """Best-fit packing over a stream of example pools, with top-up.

    Whole sequences go best-fit (longest first) into open rows, which stay open across
    :meth:`add` calls so that later sequences fill them. A row is emitted when full, or (the
    fullest first) when more than ``max_open_rows`` are open (None = unbounded), or at
    :meth:`flush`. A row emitted with at least ``min_topup`` free tokens is first topped up
    with a sequence taken from the emptiest open row, cut to fit when it is too long (at a
    chunk start for full-duplex examples; the cut-off part stays behind as its own
    sequence). ``row["segments"]`` records (example index in the stream, start, end) per
    sequence.

        packer = StreamingPacker(seq_len=512, pad_id=vocab.special("pad"))
        for pool in pools_of_examples:
            for row in packer.add(pool): ...
        for row in packer.flush(): ...
    """

    def __init__(self, seq_len: int, pad_id: int = 0, max_open_rows: int | None = 64, min_topup: int = 16):
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        if max_open_rows is not None and max_open_rows < 1:
            raise ValueError(f"max_open_rows must be >= 1 or None, got {max_open_rows}")
        self.seq_len, self.pad_id, self.max_open_rows, self.min_topup = seq_len, pad_id, max_open_rows, min_topup
        self._rows: dict[int, list[_Piece]] = {}
        self._free: list[tuple[int, int]] = []  # sorted (free_tokens, row id) of open rows
        self._next_id = 0
        self._seen = 0

    def _open(self, pieces: list[_Piece]) -> int:
        r, self._next_id = self._next_id, self._next_id + 1
        self._rows[r] = pieces
        return r

    def _place(self, piece: _Piece, done: list) -> None:
        n = len(piece)
        k = bisect.bisect_left(self._free, (n, -1))
        if k < len(self._free):
            space, r = self._free.pop(k)
            self._rows[r].append(piece)
        else:
            space, r = self.seq_len, self._open([piece])
        if space > n:
            bisect.insort(self._free, (space - n, r))
        else:
            done.append(self._emit(r))

    def add(self, examples: Sequence[Example]) -> list[dict]:
        """Pack ``examples``; return the rows that are complete now."""
        pieces = sorted(_pieces(examples, self.seq_len, self._seen), key=lambda p: -len(p))
        self._seen += len(examples)
        done: list[dict] = []
        for piece in pieces:
            self._place(piece, done)
            while self.max_open_rows is not None and len(self._free) > self.max_open_rows:
                space, r = self._free.pop(0)
                done.append(self._finish(r, space))
        return done

    def flush(self) -> list[dict]:
        """Emit every open row: their sequences are re-packed best-fit decreasing, then topped up."""
        pieces = sorted((p for _, r in self._free for p in self._rows.pop(r)), key=lambda p: -len(p))
        self._free = []
        done: list[dict] = []
        for piece in pieces:
            self._place(piece, done)
        while self._free:
            space, r = self._free.pop(0)
            done.append(self._finish(r, space))
        return done

    def _finish(self, r: int, space: int) -> dict:
        """Top row ``r`` up from the emptiest open rows, then emit it."""
        while space >= self.min_topup and self._free:
            dspace, d = self._free.pop()
            donor = self._rows[d]
            fits = [i for i, p in enumerate(donor) if len(p) <= space]
            if fits:
                piece = donor.pop(max(fits, key=lambda i: len(donor[i])))
            else:
                c = donor[-1].best_cut(space)
                if c == 0:
                    bisect.insort(self._free, (dspace, d))
                    break
                piece, donor[-1] = donor[-1].cut(c)
            self._rows[r].append(piece)
            space -= len(piece)
            if donor:
                bisect.insort(self._free, (dspace + len(piece), d))
            else:
                del self._rows[d]
        return self._emit(r)

    def _emit(self, r: int) -> dict:
        return _make_row(self._rows.pop(r), self.seq_len, self.pad_id)


def _make_row(parts, seq_len: int, pad_id: int) -> dict:
    lens = [len(p) for p in parts]
    used = sum(lens)
    num_pad = seq_len - used
    seg_lens = lens + ([num_pad] if num_pad else [])
    pad = np.full(num_pad, pad_id, np.int64)
    ignore = np.full(num_pad, IGNORE, np.int64)
    return {
        "input_ids": np.concatenate([p.ids for p in parts] + [pad]).astype(np.int64),
        "labels": np.concatenate([p.labels for p in parts] + [ignore]),
        "position_ids": np.concatenate([np.arange(n, dtype=np.int64) for n in seg_lens]),
        "stream": np.concatenate([p.stream for p in parts] + [np.zeros(num_pad, np.int64)]),
        "seq_lens": np.asarray(seg_lens, np.int64),
        "num_seqs": len(lens),
        "num_pad": num_pad,
        "segments": np.asarray([(p.source, p.start, p.start + len(p)) for p in parts], np.int64).reshape(-1, 3),
    }


def pad_rows(examples: Sequence[Example], seq_len: int, pad_id: int = 0) -> list[dict]:
    """One (windowed) sequence per row: the unpacked baseline for padding comparisons."""
    return [_make_row([p], seq_len, pad_id) for p in _pieces(examples, seq_len)]


def padding_fraction(rows: Sequence[dict]) -> float:
    """Fraction of row positions that are padding."""
    total = sum(len(r["input_ids"]) for r in rows)
    return float(sum(r["num_pad"] for r in rows) / total) if total else 0.0


def block_causal_mask(seq_lens_per_row: Sequence[Sequence[int]], seq_len: int,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive (B, 1, L, L) mask: 0 where query may attend key (same segment, key <= query),
    ``finfo(dtype).min`` elsewhere. Works with eager and sdpa attention."""
    seg = torch.stack([torch.repeat_interleave(torch.arange(len(s)), torch.as_tensor(list(s)))
                       for s in seq_lens_per_row])
    if seg.shape[1] != seq_len:
        raise ValueError(f"seq_lens sum to {seg.shape[1]}, expected seq_len {seq_len}")
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    allowed = (seg[:, :, None] == seg[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def collate(rows: Sequence[dict], attention_mask: bool = False) -> dict:
    """Stack rows into torch tensors: ``input_ids, labels, position_ids, stream`` (B, L) long,
    ``cu_seqlens`` (int32, over the flattened batch), ``num_pad``; with ``attention_mask=True``
    also the 4-D block-causal mask (for backends that ignore packed position ids)."""
    if not rows:
        raise ValueError("collate got no rows")
    out = {k: torch.from_numpy(np.stack([r[k] for r in rows])).long()
           for k in ("input_ids", "labels", "position_ids", "stream")}
    lens = np.concatenate([r["seq_lens"] for r in rows])
    out["cu_seqlens"] = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)])).int()
    out["num_pad"] = int(sum(r["num_pad"] for r in rows))
    if attention_mask:
        out["attention_mask"] = block_causal_mask([r["seq_lens"] for r in rows], out["input_ids"].shape[1])
    return out


def model_inputs(batch: dict) -> dict:
    """The keyword arguments for a Hugging Face causal LM forward on a collated batch."""
    kw = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    if "attention_mask" in batch:
        kw["attention_mask"] = batch["attention_mask"]
    return kw


def stream_loss_sums(logits: torch.Tensor, labels: torch.Tensor, stream: torch.Tensor):
    """Mean CE over target positions (to backpropagate), plus the detached CE sum and target count
    of every stream as two tensors indexed by stream code (``formats.STREAM_NAMES``). No host sync:
    a training step can accumulate these and read them only when it logs."""
    ce = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                           labels.reshape(-1).to(logits.device), ignore_index=IGNORE,
                                           reduction="none")
    valid = labels.reshape(-1).to(ce.device) != IGNORE
    total = ce.sum() / valid.sum().clamp(min=1)
    n = len(STREAM_NAMES)
    code = stream.reshape(-1).to(ce.device)
    code = torch.where(valid & (code >= 0) & (code < n), code, torch.full_like(code, n))  # n: not a target
    sums = torch.zeros(n + 1, dtype=ce.dtype, device=ce.device).index_add_(0, code, ce.detach())
    return total, sums[:n], torch.bincount(code, minlength=n + 1)[:n]


def packed_loss(logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over target positions plus per-stream means (``{stream_name: loss}``,
    only streams present in the batch)."""
    loss, sums, counts = stream_loss_sums(logits, batch["labels"], batch["stream"])
    s, c = sums.tolist(), counts.tolist()
    return loss, {name: s[code] / c[code] for code, name in enumerate(STREAM_NAMES) if c[code]}
