"""Install WordNet 3.0 for nltk's METEOR into a project-local folder, offline afterwards.

    python tools/install_wordnet.py [TARGET]      # default TARGET: <repo>/.nltk_data

No PyPI package ships WordNet, so this builds it from Debian's ``wordnet-base`` and
``wordnet-sense-index`` packages (``apt-get download``, no root needed; ``dpkg-deb -x``):
``usr/share/wordnet/*`` is copied into ``TARGET/corpora/wordnet/`` and the ``lexnames``
file, which Debian does not ship but nltk needs, is rebuilt from the ``lexnames.5WN`` man
page (three tab-separated columns: file number, lexicographer file name, part-of-speech
number 1 noun, 2 verb, 3 adjective, 4 adverb). About 36 MB.

Idempotent: when ``TARGET/corpora/wordnet/.installed`` exists the script does nothing. The
project's code points nltk at TARGET itself (``omni.metrics.nlg.nltk_data_dir``); the
user's ``NLTK_DATA`` is not needed.
"""
from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("wordnet-base", "wordnet-sense-index")
POS_NUMBER = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
NEEDED = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj",
          "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc", "index.sense")


def lexnames_from_man(man_text: str) -> str:
    """The ``lexnames`` file (``NN\\tname\\tpos``) from the troff source of ``lexnames.5WN``."""
    rows = []
    for line in man_text.splitlines():
        m = re.match(r"^(\d\d)\t([a-z]+\.[A-Za-z]+)\s*\t", line)
        if m:
            num, name = m.group(1), m.group(2)
            rows.append(f"{num}\t{name}\t{POS_NUMBER[name.split('.')[0]]}")
    if len(rows) != 45:
        raise RuntimeError(f"expected 45 lexicographer files in lexnames.5WN, parsed {len(rows)}")
    return "\n".join(rows) + "\n"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def download_debs(work: Path) -> list[Path]:
    """``apt-get download`` both packages into ``work`` (one ``apt-get update`` retry when root)."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise SystemExit("install_wordnet: needs apt-get and dpkg-deb (a Debian/Ubuntu machine); elsewhere "
                         "put WordNet 3.0 (with a lexnames file) under .nltk_data/corpora/wordnet/ yourself")
    r = _run(["apt-get", "download", *PACKAGES], work)
    if r.returncode != 0 and hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
        _run(["apt-get", "update", "-qq"], work)
        r = _run(["apt-get", "download", *PACKAGES], work)
    debs = sorted(work.glob("*.deb"))
    if r.returncode != 0 or len(debs) != len(PACKAGES):
        raise SystemExit(f"install_wordnet: `apt-get download {' '.join(PACKAGES)}` failed: "
                         f"{(r.stderr or r.stdout).strip()[-400:]} (run `apt-get update` as root first)")
    return debs


def install(target: Path) -> Path:
    """Install into ``target`` (an NLTK data folder) and return the wordnet corpus folder."""
    dest = target / "corpora" / "wordnet"
    if (dest / ".installed").exists():
        return dest
    with tempfile.TemporaryDirectory(prefix="wordnet-") as tmp:
        work = Path(tmp)
        for deb in download_debs(work):
            r = _run(["dpkg-deb", "-x", str(deb), "x"], work)
            if r.returncode != 0:
                raise SystemExit(f"install_wordnet: dpkg-deb -x {deb.name} failed: {r.stderr.strip()}")
        src = work / "x" / "usr" / "share" / "wordnet"
        missing = [f for f in NEEDED if not (src / f).exists()]
        if missing:
            raise SystemExit(f"install_wordnet: the Debian packages lack {missing}")
        man = gzip.decompress((work / "x/usr/share/man/man5/lexnames.5WN.gz").read_bytes()).decode()
        staging = dest.with_name("wordnet.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for f in src.iterdir():
            shutil.copy2(f, staging / f.name)
        (staging / "lexnames").write_text(lexnames_from_man(man))
        shutil.copy2(work / "x/usr/share/doc/wordnet-base/copyright", staging / "LICENSE")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    (dest / ".installed").write_text("WordNet 3.0 from Debian wordnet-base + wordnet-sense-index\n")
    return dest


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    target = Path(argv[0]).resolve() if argv else REPO / ".nltk_data"
    dest = install(target)
    print(f"WordNet ready in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
