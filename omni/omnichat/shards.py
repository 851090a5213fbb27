"""The one place where ``omni.omnichat`` reads the shard format (stream of records, manifest).

The shard reader lives in :mod:`omni.shards` (issue 20: ``omni`` must not import ``data_prep``;
``data_prep.reader`` is only a re-export of it). Every OmniChat use of it goes through this module.
"""
from __future__ import annotations

from collections.abc import Iterator

from omni.shards import ShardStream, load_manifest

__all__ = ["ShardStream", "load_manifest", "mixed_records", "ZERO_WEIGHT"]


ZERO_WEIGHT = 1e-12
"""The shard reader refuses weights <= 0: an α of 0 or 1 gives the empty side this weight and
:func:`mixed_records` drops any record of it that is still drawn."""


def mixed_records(data_dir, split: str, weights: dict[str, float], **stream_kw) -> Iterator[dict]:
    """Records of ``split`` drawn by ``weights`` (:class:`ShardStream`); each record
    gets ``source_name`` (its manifest source); sources of weight 0 never come out."""
    class _Tagged(ShardStream):
        def _source_iter(self, source, *a, **k):
            for rec in super()._source_iter(source, *a, **k):
                rec["source_name"] = source
                yield rec

    w = {n: (v if v > 0 else ZERO_WEIGHT) for n, v in weights.items()}
    for rec in _Tagged(data_dir, split, weights=w, **stream_kw):
        if weights.get(rec["source_name"], 1.0) > 0:
            yield rec
