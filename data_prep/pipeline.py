"""Ray Data pipeline: sources → synthesise/read → validate → tokenize (actor pool) → shards.

Output (``data.output_dir``)::

    tokenizers/speech/  tokenizers/text/     fitted first, on a seeded sample
    shards/<split>/<source>-<NNNNNN>.tar     WebDataset shards, split = train | heldout
    manifest.json                            shards (sha256, samples, bytes), sources, tokenizers
    rejects.jsonl                            one line per rejected row: input and reason
    config.resolved.yaml

Determinism: an item's split comes from a stable hash of its key and its shard from its rank
inside (split, source); a shard holds the same rows whatever the order Ray runs them in, and
its bytes are fixed (see ``data_prep.shards``). A finished shard leaves a record in
``_done/``; a re-run skips those shards entirely, so a run killed midway resumes with no
duplicate and no missing sample.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from omni.config import Config, save_resolved
from data_prep import shards as S
from data_prep.validate import validate_record

# ----------------------------------------------------------------------------- plan


def _split_of(key: str, heldout_fraction: float) -> str:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < heldout_fraction else "train"


def plan_items(cfg: Config) -> list[dict]:
    """One light row per input record, with its split and shard fixed up front."""
    items = []
    for src in cfg.data.sources:
        if src.kind == "synthetic":
            n = src.num_dialogues or cfg.synth.num_dialogues
            for i in range(n):
                items.append({"source": src.name, "kind": "synthetic", "index": i,
                              "key": f"syn-{src.name}-{i:06d}".replace(".", "_")})
        else:
            from data_prep.sources import list_items  # real corpora readers
            items += list_items(src)
    by_group: dict[tuple, list[dict]] = {}
    for it in items:
        it["split"] = _split_of(it["key"], cfg.data.heldout_fraction)
        by_group.setdefault((it["split"], it["source"]), []).append(it)
    for (split, source), group in by_group.items():
        group.sort(key=lambda r: r["key"])
        for rank, it in enumerate(group):
            it["shard"] = f"{split}/{source}-{rank // cfg.data.shard_max_samples:06d}"
    return items


def load_item(item: dict, cfg: Config) -> dict:
    """Item → dialogue record (synthesised here for ``synthetic``)."""
    if item["kind"] == "synthetic":
        from data_prep.synth import generate_dialogue
        rec = generate_dialogue(item["index"], cfg.synth, seed=cfg.synth.seed)
        rec["key"] = item["key"]
        rec["meta"]["id"] = item["key"]
        return rec
    from data_prep.sources import load_record
    return load_record(item)


# ---------------------------------------------------------------------- tokenizers
def fit_tokenizers(cfg: Config, out_dir: Path, sample_size: int = 24) -> dict:
    """Fit the speech tokenizer and train the text tokenizer on a seeded sample of records."""
    from omni.speech_tokenizer import MelKMeansTokenizer, load_speech_tokenizer
    from omni.text_tokenizer import TextTokenizer

    speech_dir, text_dir = out_dir / "tokenizers" / "speech", out_dir / "tokenizers" / "text"
    if (speech_dir / "speech_tokenizer.json").exists() and (text_dir / "tokenizer.json").exists():
        return {"speech_dir": str(speech_dir), "text_dir": str(text_dir), "reused": True}
    items = [it for it in plan_items(cfg) if it["split"] == "train"]
    rng = np.random.default_rng(cfg.tokenizer.seed)
    pick = sorted(rng.choice(len(items), size=min(sample_size, len(items)), replace=False).tolist())
    waves, texts = [], []
    for i in pick:
        rec = load_item(items[i], cfg)
        waves += [rec["user"], rec["assistant"]]
        texts += [t["text"] for t in rec["meta"]["turns"]]
    t0 = time.time()
    if cfg.tokenizer.speech == "mel_kmeans":
        tok = MelKMeansTokenizer.fit(waves, num_units=cfg.tokenizer.num_units, seed=cfg.tokenizer.seed,
                                     max_frames=cfg.tokenizer.fit_max_frames)
        tok.save(speech_dir)
    else:
        if not cfg.tokenizer.speech_path:
            raise ValueError(f"tokenizer.speech={cfg.tokenizer.speech} needs tokenizer.speech_path (a local folder)")
        tok = load_speech_tokenizer(cfg.tokenizer.speech_path)
        tok.save(speech_dir)
    if cfg.tokenizer.text == "bpe":
        TextTokenizer.train(texts, vocab_size=cfg.tokenizer.text_vocab_size, seed=cfg.tokenizer.seed).save(text_dir)
    else:
        TextTokenizer.from_pretrained(cfg.tokenizer.text_path).save(text_dir)
    return {"speech_dir": str(speech_dir), "text_dir": str(text_dir), "fit_records": len(pick),
            "fit_s": round(time.time() - t0, 2), "reused": False}


# ------------------------------------------------------------------- row functions
def synth_and_validate(item: dict, cfg_json: str) -> dict:
    """Ray Data ``map``: item → row with raw audio bytes, or a reject row."""
    cfg = Config.model_validate_json(cfg_json)
    row = {k: item[k] for k in ("key", "source", "split", "shard")}
    try:
        rec = load_item(item, cfg)
        reason = validate_record(rec, cfg.data)
    except Exception as e:  # unreadable input: recorded, never fatal
        rec, reason = None, f"{type(e).__name__}: {e}"
    row["reason"] = reason or ""
    row["meta"] = json.dumps(rec["meta"]) if rec is not None else json.dumps({"input": item})
    row["user_pcm"] = rec["user"].astype(np.float32).tobytes() if rec is not None and not reason else b""
    row["assistant_pcm"] = rec["assistant"].astype(np.float32).tobytes() if rec is not None and not reason else b""
    return row


class Tokenize:
    """Ray Data actor (``map_batches`` with an actor pool): speech units + text ids, encoded."""

    def __init__(self, speech_dir: str, text_dir: str, frame_rate_hz: float):
        from omni.speech_tokenizer import load_speech_tokenizer
        from omni.text_tokenizer import TextTokenizer

        self.speech = load_speech_tokenizer(speech_dir)
        self.text = TextTokenizer.load(text_dir)
        self.frame_rate_hz = frame_rate_hz

    def __call__(self, batch: dict) -> dict:
        out = {k: [] for k in ("key", "source", "split", "shard", "reason", "json", "user_flac",
                               "assistant_flac", "user_units", "assistant_units")}
        for i in range(len(batch["key"])):
            for k in ("key", "source", "split", "shard", "reason"):
                out[k].append(batch[k][i])
            meta = json.loads(batch["meta"][i])
            if batch["reason"][i]:
                out["json"].append(json.dumps(meta).encode())
                for k in ("user_flac", "assistant_flac", "user_units", "assistant_units"):
                    out[k].append(b"")
                continue
            for t in meta["turns"]:
                t["text_ids"] = self.text.encode(t.get("spoken_text") or t["text"])
            meta["frame_rate_hz"] = self.frame_rate_hz
            for ch in ("user", "assistant"):
                wave = np.frombuffer(batch[f"{ch}_pcm"][i], dtype=np.float32)
                out[f"{ch}_flac"].append(S.encode_flac(wave))
                out[f"{ch}_units"].append(S.encode_npy(self.speech.encode(wave).astype(np.int16)))
            out["json"].append(json.dumps(meta, sort_keys=True).encode())
        return out


def write_group(rows, out_dir: str) -> dict:
    """Ray Data ``map_groups``: all rows of one shard → the shard file + its done record."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    shard = df["shard"].iloc[0]
    good = df[df["reason"] == ""]
    samples = [{"__key__": r.key, "json": r.json, "user.flac": r.user_flac, "assistant.flac": r.assistant_flac,
                "user_units.npy": r.user_units, "assistant_units.npy": r.assistant_units}
               for r in good.itertuples()]
    out = Path(out_dir)
    entry = S.write_shard(out / "shards" / f"{shard}.tar", samples) if samples else None
    if entry:
        entry["path"] = str(Path(entry["path"]).relative_to(out))
        entry["audio_s"] = round(sum(json.loads(s["json"])["duration_s"] for s in samples), 3)
    rejects = [{"key": r.key, "source": r.source, "input": json.loads(r.json), "reason": r.reason}
               for r in df[df["reason"] != ""].itertuples()]
    done = {"shard": shard, "source": df["source"].iloc[0], "entry": entry, "read": len(df),
            "accepted": len(samples), "rejects": rejects}
    done_path = out / "_done" / (shard.replace("/", "__") + ".json")
    done_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = done_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(done, sort_keys=True))
    tmp.replace(done_path)
    return {"shard": [shard]}


# -------------------------------------------------------------------------- driver
def run(cfg: Config, progress: bool = True) -> dict:
    """Run the whole pipeline on the connected Ray cluster; returns the manifest."""
    import ray

    out = Path(cfg.data.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.verbose_progress = False

    t0 = time.time()
    tok_info = fit_tokenizers(cfg, out)
    items = plan_items(cfg)
    done_dir = out / "_done"
    finished = {p.stem.replace("__", "/") for p in done_dir.glob("*.json")} if done_dir.exists() else set()
    todo = [it for it in items if it["shard"] not in finished]
    if todo:
        cfg_json = cfg.model_dump_json()
        ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), 4 * cfg.data.synth_parallelism))
        ds = ds.map(synth_and_validate, fn_args=(cfg_json,),
                    compute=ray.data.TaskPoolStrategy(size=cfg.data.synth_parallelism))
        ds = ds.map_batches(Tokenize, batch_size=4, compute=ray.data.ActorPoolStrategy(size=cfg.data.tokenize_actors),
                            fn_constructor_args=(tok_info["speech_dir"], tok_info["text_dir"],
                                                 cfg.tokenizer.frame_rate_hz))
        n_shards = len({it["shard"] for it in todo})
        ds = ds.groupby("shard", num_partitions=min(n_shards, 16)).map_groups(write_group, fn_args=(str(out),), batch_format="pandas")
        written = ds.take_all()
    else:
        written = []
    manifest = build_manifest(cfg, out, tok_info, items)
    manifest["run"] = {"seconds": round(time.time() - t0, 2), "shards_written": len(written),
                       "shards_skipped": len({it["shard"] for it in items}) - len(written)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def build_manifest(cfg: Config, out: Path, tok_info: dict, items: list[dict]) -> dict:
    dones = [json.loads(p.read_text()) for p in sorted((out / "_done").glob("*.json"))]
    sources: dict[str, dict] = {}
    shard_entries, rejects = [], []
    for d in dones:
        s = sources.setdefault(d["source"], {"read": 0, "accepted": 0, "rejected": 0, "hours": 0.0})
        s["read"] += d["read"]
        s["accepted"] += d["accepted"]
        s["rejected"] += len(d["rejects"])
        rejects += d["rejects"]
        if d["entry"]:
            s["hours"] = round(s["hours"] + d["entry"]["audio_s"] / 3600, 6)
            shard_entries.append({**d["entry"], "source": d["source"], "split": d["shard"].split("/")[0]})
    with open(out / "rejects.jsonl", "w") as f:
        for r in sorted(rejects, key=lambda r: r["key"]):
            f.write(json.dumps(r, sort_keys=True) + "\n")
    weights = {s.name: s.weight for s in cfg.data.sources}
    for name, s in sources.items():
        s["weight"] = weights.get(name, 1.0)
    speech_meta = json.loads((Path(tok_info["speech_dir"]) / "speech_tokenizer.json").read_text())
    return {
        "config_hash": hashlib.sha256(json.dumps(
            {"data": cfg.data.model_dump(mode="json", exclude={"output_dir", "tokenize_actors",
                                                               "synth_parallelism", "shuffle_buffer"}),
             "synth": cfg.synth.model_dump(mode="json"), "tokenizer": cfg.tokenizer.model_dump(mode="json")},
            sort_keys=True).encode()).hexdigest()[:16],
        "planned": len(items),
        "shards": sorted(shard_entries, key=lambda e: e["path"]),
        "sources": sources,
        "tokenizers": {"speech": {"dir": "tokenizers/speech", **{k: v for k, v in speech_meta.items()
                                                                 if isinstance(v, (str, int, float))}},
                       "text": {"dir": "tokenizers/text", "kind": cfg.tokenizer.text}},
    }
