"""The cgroup v2 lane: scripts/vm-test boots Debian's kernel (unified cgroup2) in a VM and runs
tests/vm there against the v2 driver. This test fails when they fail, and skips, with the
script's reason, only when the VM cannot boot on this host. It takes about 2 minutes (about 6 when
the guest stalls and the script boots it a second time)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vm-test"
BOOT = 240  # seconds the script gives one boot of the guest; it may boot twice
TIMEOUT = 2 * BOOT + 60


@pytest.mark.timeout(TIMEOUT + 60)
def test_v2_driver_in_a_vm(tmp_path):
    p = subprocess.run([str(SCRIPT), "--results", str(tmp_path), "--timeout", str(BOOT)],
                       capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    skipped = [line for line in p.stdout.splitlines() if line.startswith("vm lane skipped: ")]
    if skipped and p.returncode == 0:
        pytest.skip(skipped[-1])
    log = tmp_path / "pytest.log"
    detail = log.read_text()[-6000:] if log.exists() else out[-6000:]
    assert p.returncode == 0, f"vm-test exited {p.returncode}\n{out[-1500:]}\n--- pytest in the VM ---\n{detail}"
    assert "vm lane passed" in p.stdout, out[-3000:]
    junit = (tmp_path / "junit.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit and 'skipped="0"' in junit, junit[:500]
