"""The attack lab, whole catalogue both ways: every attack escapes when weakened and is contained
by default, naming what stopped it; nothing is left behind on the host."""

from __future__ import annotations

import json

import pytest

from tests.helpers import labtui, lib, ps_json

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]

NAMES = ["chroot", "release_agent", "host_disk", "proc_write", "ptrace", "shocker", "proc_exe", "leaked_fd",
         "state_dir", "fork_bomb", "memory_bomb"]
_RESULTS: dict[str, dict] = {}


def results(profile: str) -> dict:
    if profile not in _RESULTS:
        with open("/proc/sys/kernel/core_pattern") as f:
            before = f.read()
        p = labtui("attack", "run", "all", "--profile", profile, "--format", "json", timeout=400)
        with open("/proc/sys/kernel/core_pattern") as f:
            assert f.read() == before  # the host's sysctl is left exactly as it was
        _RESULTS[profile] = {r["attack"]: r for r in json.loads(p.stdout)}
    return _RESULTS[profile]


def test_list_shows_the_catalogue():
    items = json.loads(labtui("attack", "list", "--format", "json").stdout)
    assert [i["name"] for i in items] == NAMES
    for i in items:
        assert i["weak"] and i["default_mitigation"] and i["technique"]
    assert "CVE-2019-5736" in labtui("attack", "list").stdout


@pytest.mark.parametrize("name", NAMES)
def test_weakened_it_escapes_with_evidence(name):
    r = results("weak")[name]
    if r.get("skipped"):
        pytest.skip(r["note"])
    assert r["escaped"] is True, json.dumps(r, indent=1)
    assert r["evidence"] and r["weakening"]
    assert r["profile"] == "weak"


@pytest.mark.parametrize("name", NAMES)
def test_by_default_it_is_contained_and_names_its_mitigation(name):
    r = results("default")[name]
    if r.get("skipped"):
        pytest.skip(r["note"])
    assert r["escaped"] is False, json.dumps(r, indent=1)
    assert r["mitigation"], json.dumps(r, indent=1)
    assert r["mitigation"].startswith(("step #", "seccomp_denied event", "the container's only")), r["mitigation"]


def test_the_seccomp_mitigations_are_live_denial_events():
    d = results("default")
    assert "open_by_handle_at" in d["shocker"]["mitigation"]
    assert "mount" in d["release_agent"]["mitigation"]
    assert "fsopen" in d["host_disk"]["mitigation"]


def test_single_run_json_has_the_documented_fields():
    r = json.loads(labtui("attack", "run", "shocker", "--profile", "default", "--format", "json").stdout)
    for key in ("attack", "profile", "escaped", "evidence", "mitigation"):
        assert key in r
    assert r["attack"] == "shocker" and r["escaped"] is False


def test_nothing_is_left_behind():
    results("weak")
    results("default")
    assert ps_json(True) == []
    runs = lib() / "attack-lab" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    with open("/proc/self/cgroup") as f:
        assert "labtui-lab-" not in f.read()
