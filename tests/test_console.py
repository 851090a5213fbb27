"""A job's console: its own lines and summary on stdout, its error line on stderr; what the libraries
say (logging, warnings, C-level writes, child processes) in the log file the summary names."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOB = textwrap.dedent("""
    import logging, os, subprocess, sys, warnings
    from jobs import _common
    from omni.config import load_config

    def main():
        cfg = load_config("configs/tiny.yaml", [f"data.output_dir={sys.argv[1]}/data"])
        _common.start_logs(cfg, "toy")
        print("[1/2] step one", flush=True)
        logging.getLogger("ray").warning("ray noise")
        logging.getLogger("late.library").addHandler(logging.StreamHandler())   # a handler made after the redirect
        logging.getLogger("late.library").warning("late library noise")
        warnings.warn("a library's DeprecationWarning")
        os.write(2, b"C-level noise\\n")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child noise\\\\n')"], check=True)
        print("[2/2] step two", flush=True)
        if sys.argv[2] == "crash":
            raise RuntimeError("disk on fire\\nsecond line")
        if sys.argv[2] == "user":
            raise _common.JobError("bad input: fix it like this")
        _common.print_summary({"done": True})

    _common.run_main(main)
""")


def _run(tmp_path, mode, verbose=False):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMNI_VERBOSE", None)
    if verbose:
        env["OMNI_VERBOSE"] = "1"
    return subprocess.run([sys.executable, "-c", JOB, str(tmp_path), mode], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_console_keeps_steps_and_summary_and_the_log_gets_the_rest(tmp_path):
    r = _run(tmp_path, "ok")
    log = tmp_path / "logs" / "toy.log"
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.strip().splitlines()
    assert lines[:2] == ["[1/2] step one", "[2/2] step two"]
    assert json.loads(lines[-1]) == {"done": True, "log": str(log)}
    text = log.read_text()
    for noise in ("ray noise", "late library noise", "DeprecationWarning", "C-level noise", "child noise"):
        assert noise in text, noise


def test_errors_reach_the_console_in_one_line(tmp_path):
    r = _run(tmp_path, "user")
    assert r.returncode == 2 and r.stderr == "error: bad input: fix it like this\n"
    r = _run(tmp_path, "crash")
    log = tmp_path / "logs" / "toy.log"
    assert r.returncode == 1
    assert r.stderr == f"error: RuntimeError: disk on fire (traceback in {log})\n"
    assert "Traceback (most recent call last)" in log.read_text()


def test_omni_verbose_keeps_everything_on_the_console(tmp_path):
    r = _run(tmp_path, "ok", verbose=True)
    assert r.returncode == 0 and "ray noise" in r.stderr and "child noise" in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"done": True}
    assert not (tmp_path / "logs").exists()


def test_progress_lines_off_a_terminal():
    """Off a terminal: a line at most every ``every_s`` and always the last; on one: a bar in place."""
    import io

    from omni.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    plain, tty = io.StringIO(), Tty()
    p, q = Progress("shards", 4, every_s=3600, stream=plain), Progress("shards", 4, stream=tty)
    for i in range(1, 5):
        p.update(i, f"{3 * i} rows")
        q.update(i)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("    shards 1/4  3 rows") and "shards 4/4  12 rows" in lines[1]
    assert tty.getvalue().count("\r") == 4 and tty.getvalue().endswith("\n")
    assert "[########################] shards 4/4" in tty.getvalue()
