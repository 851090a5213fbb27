"""The import picture of pyproject.toml's [tool.importlinter] contracts (docs/design.md): the
project keeps it, and a new forbidden import - also one hidden inside a function - breaks it."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, config: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT), str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_project_keeps_its_import_contracts():
    r = _lint(ROOT, ROOT / "pyproject.toml", ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path):
    """The project's own contracts against a toy tree of the four packages: clean, it passes; with
    omni importing data_prep inside a function, or data_prep importing serve_app, or serve_app
    importing jobs, the matching contract is reported broken."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    for pkg in contracts["root_packages"]:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        (tmp_path / pkg / "core.py").write_text("X = 1\n")
    (tmp_path / "jobs" / "run.py").write_text("from omni import core\nfrom data_prep import core as c2\n")
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text((ROOT / "pyproject.toml").read_text())
    assert _lint(tmp_path, cfg, tmp_path).returncode == 0

    cases = {("omni", "def f():\n    from data_prep import core\n"): "omni is not allowed to import data_prep",
             ("data_prep", "import serve_app.core\n"): "data_prep is not allowed to import serve_app",
             ("serve_app", "from jobs import run\n"): "serve_app is not allowed to import jobs"}
    for (pkg, code), message in cases.items():
        bad = tmp_path / pkg / "bad.py"
        bad.write_text(code)
        r = _lint(tmp_path, cfg, tmp_path)
        bad.unlink()
        assert r.returncode != 0 and message in r.stdout, r.stdout[-2000:]
