"""Runs last (conftest orders it): after the whole suite nothing of ours may be left on the machine."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import BEFORE_SUITE, labtui_things, our_processes, ps_json, remove_all, remove_networks

pytestmark = pytest.mark.root

PARENT = os.environ.get("LABTUI_CGROUP_PARENT", "labtui-test")


def _wait_gone(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = check()
        if not left:
            return []
        time.sleep(0.1)
    return check()


def test_no_containers_left_by_the_tests():
    # Every test removes what it made; anything here is a test that forgot (or a bug in rm).
    left = ps_json(True)
    remove_all()
    remove_networks()
    assert left == [], [c["Names"] for c in left]


def test_no_processes_mounts_cgroups_links_or_netns_left():
    from labtui.launcher import helper

    helper.stop()  # the command's warm helper is ours to stop (and counted below if it stays)
    procs = _wait_gone(our_processes)
    assert procs == [], procs
    now = labtui_things()
    assert sorted(now["mounts"] - BEFORE_SUITE["mounts"]) == []
    # The parent (labtui-test/) stays between containers, as docker's does; once every
    # container's cgroup is gone it is empty, and `system prune`'s step removes it.
    from engine import cgroups
    from engine.steps import null_recorder

    _wait_gone(lambda: [c for c in _our_cgroups() if os.listdir(c) and any(
        os.path.isdir(os.path.join(c, n)) for n in os.listdir(c))])
    cgroups.remove_empty_parents(null_recorder())
    assert _wait_gone(_our_cgroups) == []
    # Links and network namespaces that were not there when the suite started (a real install's
    # labtui0 bridge and its containers' veths are not the suite's to judge).
    now = labtui_things()
    assert sorted(now["links"] - BEFORE_SUITE["links"]) == []
    assert sorted(now["netns"] - BEFORE_SUITE["netns"]) == []


def test_no_state_entries_left():
    root = os.environ["LABTUI_ROOT"]
    assert _listdir(os.path.join(root, "lib", "containers")) == []
    assert _listdir(os.path.join(root, "lib", ".trash")) == []  # removed containers' files deleted
    assert _listdir(os.path.join(root, "lib", "names")) == []
    assert [f for f in _listdir(os.path.join(root, "run", "sock"))] == []
    assert _listdir(os.path.join(root, "run", "containers")) == []


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _our_cgroups() -> list[str]:
    out = []
    for base in _listdir("/sys/fs/cgroup"):
        d = os.path.join("/sys/fs/cgroup", base)
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in _listdir(d) if n.startswith(PARENT)]
    return out
