"""The shard format: the contract between data preparation (which writes shards) and training,
evaluation and OmniChat (which read them). It lives in the library so that ``omni`` never
imports ``data_prep``.

* :mod:`omni.shards.format` - one shard file: a deterministic WebDataset tar (``write_shard``,
  ``iter_shard``, ``decode_sample``, FLAC/NPY member codecs, ``sha256_file``);
* :mod:`omni.shards.stream` - a prepared data set: ``load_manifest`` and the streaming training
  reader ``ShardStream`` (split by worker, shuffled, mixed by source weight, corrupt shards
  skipped and counted).

``data_prep.shards`` and ``data_prep.reader`` re-export these names for older imports.
"""
from omni.shards.format import (
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
from omni.shards.stream import UNIT_FIELDS, ShardStream, load_manifest

__all__ = ["FIELDS", "SAMPLE_RATE_HZ", "UNIT_FIELDS", "ShardStream", "decode_flac", "decode_npy", "decode_sample",
           "encode_flac", "encode_npy", "iter_shard", "load_manifest", "sha256_file", "write_shard"]
