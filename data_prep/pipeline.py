"""Ray Data pipeline: sources → read/synthesise → validate → 16 kHz → tokenize (actor pool) → shards.

Output (``data.output_dir``)::

    tokenizers/speech/  tokenizers/text/     fitted first, on a seeded sample of valid rows
    shards/<split>/<source>-<NNNNNN>.tar     WebDataset shards, split = train | heldout (with
                                             OmniChat Whisper-base features of the user turns when
                                             omnichat.content_expert = whisper_base; see
                                             omni.omnichat.precompute)
    manifest.json                            shards (sha256, samples, bytes), sources, tokenizers
    rejects.jsonl                            one line per rejected row: key, source, input, reason
    _done/<split>__<source>-<NNNNNN>.json    one record per finished shard (resume state)

Plan: every input row becomes a light *item*; its split comes from a stable hash of its key,
its shard from its rank inside (split, source) by key, ``data.shard_max_samples`` rows per
shard. So a shard always holds the same rows, and its bytes are fixed (``omni.shards.format``).

Streaming, no shuffle: items go into Ray Data sorted by shard with ``preserve_order``; rows
flow ``map`` (read/synthesise + validate, task pool) → ``map_batches(Tokenize)`` (actor pool)
→ ``map_batches(ShardWriter)`` (one light actor). The writer knows how many rows each shard
expects; it holds the rows of the shards still open (about one at a time, as rows arrive in
shard order), writes a shard the moment its last row arrives and frees it. Peak memory is a
few shards, whatever the input size.

Resume: a finished shard leaves ``_done/…json`` (written after the tar is renamed into place)
carrying the config hash and a hash of its row keys; a re-run skips exactly the shards whose
record matches, so a run killed midway finishes with no duplicate and no missing row, and the
rewritten shards have the same bytes. Bad rows never stop the run: read = accepted + rejected.

``run(cfg, engine="local")`` runs the same functions in-process without Ray (tests, debugging).
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from data_prep.validate import Reject, validate_record
from omni.config import Config, save_resolved
from omni.progress import Progress
from omni.shards import format as S

ROW_KEYS = ("key", "source", "split", "shard")

# ----------------------------------------------------------------------------- plan


def _split_of(key: str, heldout_fraction: float) -> str:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < heldout_fraction else "train"


def plan_items(cfg: Config) -> list[dict]:
    """One light row per input record, split and shard fixed up front, sorted by (shard, key)."""
    items = []
    for src in cfg.data.sources:
        if src.kind == "synthetic":
            n = src.num_dialogues or cfg.synth.num_dialogues
            for i in range(n):
                items.append({"source": src.name, "kind": "synthetic", "index": i,
                              "key": f"syn-{src.name}-{i:06d}".replace(".", "_"), "input": {"index": i}})
        else:
            from data_prep.sources import list_items  # real corpora readers
            items += list_items(src)
    keys = [it["key"] for it in items]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:3]
        raise ValueError(f"duplicate record keys {dup}: give each data.sources[] entry a distinct name")
    by_group: dict[tuple, list[dict]] = {}
    for it in items:
        it["split"] = _split_of(it["key"], cfg.data.heldout_fraction)
        by_group.setdefault((it["split"], it["source"]), []).append(it)
    for (split, source), group in by_group.items():
        group.sort(key=lambda r: r["key"])
        for rank, it in enumerate(group):
            it["shard"] = f"{split}/{source}-{rank // cfg.data.shard_max_samples:06d}"
    return sorted(items, key=lambda r: (r["shard"], r["key"]))


def config_hash(cfg: Config) -> str:
    """Hash of everything that changes shard contents (not paths, parallelism or the reader's buffer)."""
    from omni.omnichat.precompute import precompute_spec
    parts = {"data": cfg.data.model_dump(mode="json", exclude={"output_dir", "tokenize_actors",
                                                               "synth_parallelism", "shuffle_buffer"}),
             "synth": cfg.synth.content_dump(), "tokenizer": cfg.tokenizer.model_dump(mode="json")}
    content = precompute_spec(cfg.omnichat)
    if content is not None:  # only then: shards without OmniChat features keep their hash
        parts["omnichat_content"] = content
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def shard_plan(items: list[dict], cfg_hash: str) -> dict[str, dict]:
    """``{shard: {"rows": n, "keys_sha": ...}}``: what a finished shard must match."""
    plan: dict[str, list[str]] = {}
    for it in items:
        plan.setdefault(it["shard"], []).append(it["key"])
    return {s: {"rows": len(k), "keys_sha": hashlib.sha256((cfg_hash + "\n" + "\n".join(sorted(k))).encode())
                .hexdigest()[:16]} for s, k in plan.items()}


def done_path(out: Path, shard: str) -> Path:
    return out / "_done" / (shard.replace("/", "__") + ".json")


def finished_shards(out: Path, plan: dict[str, dict]) -> set[str]:
    done = set()
    for shard, want in plan.items():
        p = done_path(out, shard)
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if d.get("keys_sha") == want["keys_sha"] and (d["entry"] is None or (out / d["entry"]["path"]).exists()):
            done.add(shard)
    return done


@functools.lru_cache(maxsize=4)
def _cfg(cfg_json: str) -> Config:
    return Config.model_validate_json(cfg_json)


def load_item(item: dict, cfg: Config) -> dict:
    """Item → 16 kHz dialogue record (synthesised here for ``synthetic``); raises Reject."""
    if item["kind"] == "synthetic":
        from data_prep.synth import generate_dialogue
        rec = generate_dialogue(item["index"], cfg.synth, seed=cfg.synth.seed)
        rec["key"] = item["key"]
        rec["meta"]["id"] = item["key"]
        return rec
    from data_prep.sources import load_record
    return load_record(item, cfg.data)


# ---------------------------------------------------------------------- tokenizers
def speech_tokenizer_from_config(cfg: Config, waves: list[np.ndarray]):
    """The data set's speech tokenizer: ``mel_kmeans`` fitted on ``waves``; ``phonetic`` loaded from
    ``tokenizer.speech_path`` (default ``pretrained:phone-units``, built by ``make units``); ``s3``/``mimi`` loaded from
    ``tokenizer.speech_path`` (an official S3 ``.onnx`` or a transformers Mimi folder, or a folder an
    omni tokenizer was saved to; Mimi keeps ``tokenizer.mimi_codebooks`` codebooks)."""
    from omni.speech_tokenizer import MelKMeansTokenizer, MimiTokenizer, S3Tokenizer

    tc = cfg.tokenizer
    if tc.speech == "mel_kmeans":
        return MelKMeansTokenizer.fit(waves, num_units=tc.num_units, seed=tc.seed, max_frames=tc.fit_max_frames)
    if tc.speech == "phonetic":
        from omni.speech_tokenizer import load_speech_tokenizer
        return load_speech_tokenizer(tc.speech_path or "pretrained:phone-units")
    if not tc.speech_path:
        raise ValueError(f"tokenizer.speech={tc.speech} needs tokenizer.speech_path (a local folder)")
    if tc.speech == "mimi":
        return MimiTokenizer.from_pretrained(tc.speech_path, num_codebooks=tc.mimi_codebooks)
    return S3Tokenizer.from_pretrained(tc.speech_path)


def fit_tokenizers(cfg: Config, out_dir: Path, sample_size: int = 24, items: list[dict] | None = None) -> dict:
    """Fit the speech tokenizer and train the text tokenizer on a seeded sample of valid records."""
    from omni.text_tokenizer import TextTokenizer

    speech_dir, text_dir = out_dir / "tokenizers" / "speech", out_dir / "tokenizers" / "text"
    if (speech_dir / "speech_tokenizer.json").exists() and (text_dir / "tokenizer.json").exists():
        return {"speech_dir": str(speech_dir), "text_dir": str(text_dir), "reused": True}
    items = [it for it in (items if items is not None else plan_items(cfg)) if it["split"] == "train"]
    items.sort(key=lambda r: r["key"])
    order = np.random.default_rng(cfg.tokenizer.seed).permutation(len(items)).tolist()
    waves, texts, used = [], [], 0
    for i in order:  # seeded order; invalid rows are skipped until the sample is full
        if used >= sample_size:
            break
        try:
            rec = load_item(items[i], cfg)
        except Exception:  # noqa: BLE001, S112 - a bad row is just not part of the sample
            continue
        if validate_record(rec, cfg.data):
            continue
        used += 1
        waves += [w for w in (rec["user"], rec["assistant"]) if np.any(w)]
        texts += [t["text"] for t in rec["meta"]["turns"] if t.get("text")]
    if not waves or not texts:
        raise ValueError("no valid training record with audio and text to fit the tokenizers on: check "
                         "data.sources (see rejects of a run with a pre-fitted tokenizer) or add data")
    t0 = time.time()
    speech_tokenizer_from_config(cfg, waves).save(speech_dir)
    if cfg.tokenizer.text == "bpe":
        TextTokenizer.train(texts, vocab_size=cfg.tokenizer.text_vocab_size, seed=cfg.tokenizer.seed).save(text_dir)
    else:
        TextTokenizer.from_pretrained(cfg.tokenizer.text_path).save(text_dir)
    return {"speech_dir": str(speech_dir), "text_dir": str(text_dir), "fit_records": used,
            "fit_s": round(time.time() - t0, 2), "reused": False}


# ------------------------------------------------------------------- row functions
def read_and_validate(item: dict, cfg_json: str) -> dict:
    """Ray Data ``map``: item → row with 16 kHz float32 PCM bytes, or a reject row (never raises).

    ``item`` may come wrapped as ``{"item": json}`` (Ray rows: items of different sources have
    different fields, which Arrow blocks cannot hold side by side)."""
    cfg = _cfg(cfg_json)
    if set(item) == {"item"}:
        item = json.loads(item["item"])
    row = {k: item[k] for k in ROW_KEYS}
    try:
        rec = load_item(item, cfg)
        reason = validate_record(rec, cfg.data)
    except Reject as e:
        rec, reason = None, str(e)
    except Exception as e:  # noqa: BLE001 - anything unexpected in one row is that row's problem only
        rec, reason = None, f"unreadable: {type(e).__name__}: {e}"
    row["reason"] = reason or ""
    ok = rec is not None and not reason
    row["meta"] = json.dumps(rec["meta"] if ok else {"input": item.get("input", item)}, default=str)
    row["user_pcm"] = rec["user"].astype(np.float32).tobytes() if ok else b""
    row["assistant_pcm"] = rec["assistant"].astype(np.float32).tobytes() if ok else b""
    return row


class Tokenize:
    """Ray Data actor (``map_batches`` in an actor pool): speech units + text ids, FLAC encoded;
    with ``content`` (:func:`omni.omnichat.precompute.precompute_spec`) also OmniChat's Whisper-base
    features of the user turns (``user_content``, float16 npy; index in the meta)."""

    def __init__(self, speech_dir: str, text_dir: str, frame_rate_hz: float, content: dict | None = None):
        from omni.speech_tokenizer import load_speech_tokenizer
        from omni.text_tokenizer import TextTokenizer

        self.speech = load_speech_tokenizer(speech_dir)
        self.text = TextTokenizer.load(text_dir)
        self.frame_rate_hz = frame_rate_hz
        self.content = content
        self.content_expert = None
        if content is not None:
            from omni.omnichat.experts import WhisperBaseContent
            self.content_expert = WhisperBaseContent()

    def __call__(self, batch: dict) -> dict:
        out = {k: [] for k in (*ROW_KEYS, "reason", "json", "user_flac", "assistant_flac", "user_units",
                               "assistant_units", "user_content")}
        for i in range(len(batch["key"])):
            for k in (*ROW_KEYS, "reason"):
                out[k].append(str(batch[k][i]))
            meta = json.loads(batch["meta"][i])
            if batch["reason"][i]:
                out["json"].append(json.dumps(meta, sort_keys=True).encode())
                for k in ("user_flac", "assistant_flac", "user_units", "assistant_units", "user_content"):
                    out[k].append(b"")
                continue
            for t in meta["turns"]:
                t["text_ids"] = self.text.encode(t.get("spoken_text") or t.get("text") or "")
            meta["frame_rate_hz"] = self.frame_rate_hz
            for ch in ("user", "assistant"):
                wave = np.frombuffer(batch[f"{ch}_pcm"][i], dtype=np.float32)
                out[f"{ch}_flac"].append(S.encode_flac(wave))
                out[f"{ch}_units"].append(S.encode_npy(self.speech.encode(wave).astype(np.int16)))
            out["user_content"].append(self._content(out["user_flac"][-1], meta))
            out["json"].append(json.dumps(meta, sort_keys=True).encode())
        return out

    def _content(self, user_flac: bytes, meta: dict) -> bytes:
        """OmniChat content features of the user turns (b"" when not configured); encoded from the
        FLAC-decoded wave, i.e. exactly the samples training reads back."""
        if self.content_expert is None:
            return b""
        from omni.omnichat.precompute import content_features
        arr, index = content_features(S.decode_flac(user_flac), meta, self.content_expert, self.content["max_turn_s"])
        meta["omnichat_content"] = index
        return S.encode_npy(arr)


class ShardWriter:
    """Buffers rows per shard and writes each shard (tar, then ``_done`` record) once complete.

    ``plan``: ``{shard: {"rows", "keys_sha"}}`` for the shards to write. Rows of one shard may
    arrive in any order and in several batches; a row seen twice (a retried task) counts once."""

    def __init__(self, out_dir: str, plan: dict[str, dict]):
        self.out, self.plan = Path(out_dir), plan
        self.open: dict[str, dict[str, dict]] = {}

    def add(self, row: dict) -> dict | None:
        shard = row["shard"]
        rows = self.open.setdefault(shard, {})
        rows[row["key"]] = row
        if len(rows) < self.plan[shard]["rows"]:
            return None
        del self.open[shard]
        return self._write(shard, [rows[k] for k in sorted(rows)])

    def __call__(self, batch: dict) -> dict:
        done = []
        for i in range(len(batch["key"])):
            d = self.add({k: batch[k][i] for k in batch})
            if d:
                done.append(d)
        return {"shard": [d["shard"] for d in done], "read": [d["read"] for d in done],
                "accepted": [d["accepted"] for d in done]}

    def _write(self, shard: str, rows: list[dict]) -> dict:
        good = [r for r in rows if not r["reason"]]
        samples = [{"__key__": r["key"], "json": bytes(r["json"]), "user.flac": bytes(r["user_flac"]),
                    "assistant.flac": bytes(r["assistant_flac"]), "user_units.npy": bytes(r["user_units"]),
                    "assistant_units.npy": bytes(r["assistant_units"]),
                    **({"user_content.npy": bytes(r["user_content"])} if len(r.get("user_content", b"")) else {})}
                   for r in good]
        entry = S.write_shard(self.out / "shards" / f"{shard}.tar", samples) if samples else None
        if entry:
            entry["path"] = str(Path(entry["path"]).relative_to(self.out))
            entry["audio_s"] = round(sum(json.loads(s["json"])["duration_s"] for s in samples), 3)
        rejects = [{"key": str(r["key"]), "source": str(r["source"]),
                    "input": json.loads(bytes(r["json"]))["input"], "reason": str(r["reason"])}
                   for r in rows if r["reason"]]
        done = {"shard": shard, "source": str(rows[0]["source"]), "entry": entry, "read": len(rows),
                "accepted": len(samples), "rejects": rejects, "keys_sha": self.plan[shard]["keys_sha"],
                "behaviours": sum_counts(json.loads(s["json"]).get("behaviours") for s in samples)}
        p = done_path(self.out, shard)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(done, sort_keys=True))
        tmp.replace(p)
        return done


def sum_counts(counts) -> dict[str, int]:
    """Key-wise sum of count dicts (None entries skipped), keys sorted."""
    out: dict[str, int] = {}
    for c in counts:
        for k, v in (c or {}).items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))


# -------------------------------------------------------------------------- driver
def _report(bar: Progress | None, done: int, rows: int) -> None:
    """The job's progress (stdout, see :mod:`omni.progress`): shards written, rows read, rate."""
    if bar is not None:
        bar.update(done, f"{rows} rows read, {rows / max(time.time() - bar.t0, 1e-9):.1f} rows/s")


def _run_local(todo: list[dict], cfg: Config, tok_info: dict, out: Path, plan: dict, progress: bool) -> int:
    from omni.omnichat.precompute import precompute_spec
    tok = Tokenize(tok_info["speech_dir"], tok_info["text_dir"], cfg.tokenizer.frame_rate_hz,
                   precompute_spec(cfg.omnichat))
    writer, cfg_json, written = ShardWriter(str(out), plan), cfg.model_dump_json(), 0
    bar = Progress("shards written", len(plan)) if progress else None
    for rows, item in enumerate(todo, 1):
        row = read_and_validate(item, cfg_json)
        b = tok({k: [v] for k, v in row.items()})
        if writer.add({k: v[0] for k, v in b.items()}):
            written += 1
            _report(bar, written, rows)
    return written


def _run_ray(todo: list[dict], cfg: Config, tok_info: dict, out: Path, plan: dict, progress: bool) -> int:
    import ray

    from omni.omnichat.precompute import precompute_spec
    ctx = ray.data.DataContext.get_current()
    # Ray Data's own bars draw on stderr, which a quiet job sends to its log file: the job's progress
    # is _report's bar, on stdout (with OMNI_VERBOSE=1 on a terminal both show)
    ctx.enable_progress_bars = progress and sys.stderr.isatty()
    ctx.enable_operator_progress_bars = ctx.enable_progress_bars
    ctx.execution_options.verbose_progress = False
    ctx.execution_options.preserve_order = True  # rows reach the writer in shard order: bounded buffers
    # actor pools hold their CPUs from the start; per-operator reservations on top of that starve
    # the read tasks on 1-2 CPU nodes ("cluster resources are not enough to run any task")
    ctx.op_resource_reservation_enabled = False
    par = cfg.data.synth_parallelism
    n_blocks = max(1, min(len(todo), max(4 * par, len(todo) // 4)))
    ds = ray.data.from_items([{"item": json.dumps(it)} for it in todo], override_num_blocks=n_blocks)
    # fractional CPUs: a 1-CPU node still runs one read task next to the tokenizer actor
    ds = ds.map(read_and_validate, fn_args=(cfg.model_dump_json(),), num_cpus=0.75,
                compute=ray.data.TaskPoolStrategy(size=par))
    ds = ds.map_batches(Tokenize, batch_size=4, num_cpus=0.25,
                        compute=ray.data.ActorPoolStrategy(size=cfg.data.tokenize_actors),
                        fn_constructor_args=(tok_info["speech_dir"], tok_info["text_dir"],
                                             cfg.tokenizer.frame_rate_hz, precompute_spec(cfg.omnichat)))
    ds = ds.map_batches(ShardWriter, batch_size=None, num_cpus=0, compute=ray.data.ActorPoolStrategy(size=1),
                        fn_constructor_args=(str(out), plan))
    written, rows = 0, 0
    bar = Progress("shards written", len(plan)) if progress else None
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        written += len(batch["shard"])
        rows += int(np.sum(batch["read"])) if len(batch["shard"]) else 0
        if len(batch["shard"]):
            _report(bar, written, rows)
    return written


def run(cfg: Config, progress: bool = True, engine: str = "ray") -> dict:
    """Run the pipeline (``engine="ray"`` on the connected cluster, ``"local"`` in-process); returns the manifest."""
    if engine not in ("ray", "local"):
        raise ValueError(f"engine must be 'ray' or 'local', got {engine!r}")
    out = Path(cfg.data.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    t0 = time.time()
    if any(src.kind == "synthetic" for src in cfg.data.sources):
        from data_prep.synth.voices import check_voices
        check_voices(cfg.synth)  # before the tokenizer fit, which skips rows that fail
    items = plan_items(cfg)
    tok_info = fit_tokenizers(cfg, out, items=items)
    chash = config_hash(cfg)
    plan = shard_plan(items, chash)
    finished = finished_shards(out, plan)
    todo = [it for it in items if it["shard"] not in finished]
    todo_plan = {s: p for s, p in plan.items() if s not in finished}
    written = 0
    if todo:
        written = (_run_ray if engine == "ray" else _run_local)(todo, cfg, tok_info, out, todo_plan, progress)
    missing = set(plan) - finished_shards(out, plan)
    if missing:
        raise RuntimeError(f"{len(missing)} shard(s) not finished (e.g. {sorted(missing)[:3]}): re-run to resume")
    manifest = build_manifest(cfg, out, tok_info, items, plan, chash)
    manifest["run"] = {"seconds": round(time.time() - t0, 2), "shards_written": written,
                       "shards_skipped": len(finished)}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(out / "manifest.json")
    return manifest


def build_manifest(cfg: Config, out: Path, tok_info: dict, items: list[dict], plan: dict, chash: str) -> dict:
    dones = [json.loads(done_path(out, s).read_text()) for s in sorted(plan)]
    sources: dict[str, dict] = {s.name: {"read": 0, "accepted": 0, "rejected": 0, "hours": 0.0, "kind": s.kind,
                                         "weight": s.weight} for s in cfg.data.sources}
    shard_entries, rejects = [], []
    for d in dones:
        s = sources[d["source"]]
        s["read"] += d["read"]
        s["accepted"] += d["accepted"]
        s["rejected"] += len(d["rejects"])
        rejects += d["rejects"]
        if d.get("behaviours"):  # synthetic duplex behaviours (data_prep.synth.duplex.count_behaviours)
            s["behaviours"] = sum_counts([s.get("behaviours"), d["behaviours"]])
        if d["entry"]:
            s["hours"] = round(s["hours"] + d["entry"]["audio_s"] / 3600, 6)
            shard_entries.append({**d["entry"], "source": d["source"], "split": d["shard"].split("/")[0]})
    for name, s in sources.items():
        if s["accepted"] + s["rejected"] != s["read"]:
            raise RuntimeError(f"source {name}: accepted {s['accepted']} + rejected {s['rejected']} != read {s['read']}")
    tmp = out / "rejects.jsonl.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in sorted(rejects, key=lambda r: r["key"]))
    tmp.replace(out / "rejects.jsonl")
    speech_meta = json.loads((Path(tok_info["speech_dir"]) / "speech_tokenizer.json").read_text())
    behaviours = sum_counts(s.get("behaviours") for s in sources.values())
    return {
        "config_hash": chash,
        "planned": len(items),
        **({"behaviours": behaviours} if behaviours else {}),
        "shards": sorted(shard_entries, key=lambda e: e["path"]),
        "sources": sources,
        "tokenizers": {"speech": {"dir": "tokenizers/speech", **{k: v for k, v in speech_meta.items()
                                                                 if isinstance(v, (str, int, float))}},
                       "text": {"dir": "tokenizers/text", "kind": cfg.tokenizer.text}},
    }
