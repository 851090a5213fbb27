"""A client that stops reading must not stall the other sessions of its replica: the proxy bounds
what waits for it (serve.max_send_lag_s), tells the replica the client left (the session's state is
freed) and closes it with 4003 (docs/protocol.md). Live Ray + Serve in a loopback-only network
namespace with small TCP send buffers (tests/slow_consumer_drill.py), so the stall shows in seconds."""
from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _netns_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    setup = "ip link set lo up && echo '4096 16384 65536' > /proc/sys/net/ipv4/tcp_wmem"
    r = subprocess.run(["unshare", "-rn", "sh", "-c", setup], capture_output=True, check=False)
    return r.returncode == 0


def test_slow_consumer_is_closed_4003_and_the_others_stream_on():
    if not _netns_ok():
        pytest.skip("needs `unshare -rn` (unprivileged user + network namespaces) and `ip`")
    cmd = ("ip link set lo up && echo '4096 16384 65536' > /proc/sys/net/ipv4/tcp_wmem && "
           f"exec {sys.executable} tests/slow_consumer_drill.py")
    r = subprocess.run(["unshare", "-rn", "sh", "-c", cmd], cwd=REPO, capture_output=True, text=True,
                       timeout=540, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # the replica let the stalled session go (the proxy told it the client left) ...
    assert got["ready"] == "ready" and got["freed_after_s"] is not None and got["sessions_after"] == 0
    # ... and the client, once it reads again, finds the documented close code and its reason
    assert got["slow_close_code"] == 4003, got
    ev = got["slow_last_event"]
    assert ev["type"] == "error" and ev["code"] == 4003 and "reads too slowly" in ev["message"]
    # the other session on the same replica streamed on: every chunk, closed normally, and replies
    # kept coming while the stalled one was being detected (none of its 3 s windows was empty)
    assert got["good_close_code"] == 1000 and got["good_errors"] == []
    assert got["good_steps"] == got["good_done_chunks"] >= 5
    times = got["good_step_times_s"]
    assert all(b - a < 3.0 for a, b in itertools.pairwise(times)), times
