"""Compatibility name: the shard format lives in :mod:`omni.shards.format` (the library owns the
contract between data preparation and training). Import from there in new code."""
from omni.shards.format import (  # noqa: F401
    FIELDS,
    SAMPLE_RATE_HZ,
    decode_flac,
    decode_npy,
    decode_sample,
    encode_flac,
    encode_npy,
    iter_shard,
    sha256_file,
    write_shard,
)
