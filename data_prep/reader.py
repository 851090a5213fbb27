"""Compatibility name: the training reader lives in :mod:`omni.shards.stream` (``ShardStream``,
``load_manifest``). Import from ``omni.shards`` in new code."""
from omni.shards.stream import UNIT_FIELDS, ShardStream, load_manifest  # noqa: F401
