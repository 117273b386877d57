"""tests/vm: the v2 driver with real containers on a unified cgroup2 kernel.

They run in the VM lane (scripts/vm-test boots Debian's kernel with virtme-ng and runs them as
root there, LABTUI_VM_LANE=1). On a host whose cgroups are not unified (this hybrid machine) they
skip and say why. Inside the lane a non-unified guest is an error, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.cgroups import detect

HERE = Path(__file__).parent
LAYOUT = detect()
UNIFIED = LAYOUT.kind == "unified"
IN_VM_LANE = os.environ.get("LABTUI_VM_LANE") == "1"


def pytest_collection_modifyitems(config, items):
    ours = [i for i in items if HERE in Path(str(i.path)).parents]
    if not ours or UNIFIED:
        return
    if IN_VM_LANE:
        raise pytest.UsageError(f"VM lane: the guest's cgroup layout is {LAYOUT.kind!r}, not unified "
                                f"(mounts: v1 {sorted(LAYOUT.v1)}, v2 {LAYOUT.v2_mount})")
    skip = pytest.mark.skip(reason=f"needs a unified cgroup v2 host (this one is {LAYOUT.kind}): "
                                   "run scripts/vm-test")
    for item in ours:
        item.add_marker(skip)
