"""engine.doctor without the kernel's side: findings of the state directory's own entries, the
step-stream scan that says which links and cgroups are ours, df's sizes, the CLI's --format."""

from __future__ import annotations

import argparse
import json
import os
import time

import pytest

from engine import doctor, paths
from engine.doctor import base, df, entries, host
from engine.errors import InvalidArgument

OLD = time.time() - 60
CID = "ab" * 32


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path))
    paths.ensure_dirs()
    return tmp_path


def _age(p, follow: bool = True) -> None:
    os.utime(p, (OLD, OLD), follow_symlinks=follow)


def test_finding_to_dict_says_whether_prune_fixes_it():
    f = base.Finding("veth", "lt0123456789", "why", lambda: "done")
    assert f.to_dict() == {"kind": "veth", "object": "lt0123456789", "why": "why", "fixable": True}
    assert base.Finding("rule", "x", "y").fixable is False


def test_entries_without_a_container_are_found_and_removed(root):
    names = root / "lib" / "names"
    names.mkdir()
    os.symlink(CID, names / "ghost")
    _age(names / "ghost", follow=False)
    run = root / "run" / "containers" / CID
    run.mkdir()
    _age(run)
    sock = root / "run" / "sock" / f"{CID[:20]}.sock"
    sock.write_text("")
    _age(sock)
    half = root / "lib" / "containers" / ("cd" * 32)
    half.mkdir()
    _age(half)
    found = entries.entries(base.Ctx())
    assert sorted((f.kind, f.object) for f in found) == [
        ("entry", "containers/cdcdcdcdcdcd"), ("entry", f"run/containers/{CID[:12]}"),
        ("name", "ghost"), ("socket", f"sock/{CID[:20]}.sock")]
    done = doctor.repair(found)
    assert "Removed name ghost (no container)" in done
    assert entries.entries(base.Ctx()) == []
    assert not os.path.lexists(names / "ghost") and not run.exists() and not sock.exists() and not half.exists()


def test_a_fresh_entry_is_left_to_the_create_in_flight(root):
    (root / "lib" / "containers" / CID).mkdir()  # config.json not written yet
    assert entries.entries(base.Ctx()) == []


def test_a_name_of_an_existing_container_is_not_a_finding(root):
    d = root / "lib" / "containers" / CID
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"name": "web", "created": ""}))
    (d / "state.json").write_text("{}")
    (root / "lib" / "names").mkdir()
    os.symlink(CID, root / "lib" / "names" / "web")
    _age(root / "lib" / "names" / "web", follow=False)
    assert entries.entries(base.Ctx()) == []


def test_the_step_stream_says_which_links_and_cgroups_are_ours(root):
    lines = [
        {"mechanism": "network", "op": "link_add", "target": "ltbr-abc123", "value": "type bridge"},
        {"mechanism": "network", "op": "link_add", "target": "lt0123456789", "errno": "EEXIST"},
        {"mechanism": "cgroup", "op": "mkdir", "target": "/sys/fs/cgroup/pids/zz/" + CID},
        {"mechanism": "network", "op": "link_show", "target": "labtui0"},
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"op": "link_add", "target": "half'  # mid-append
    paths.steps_stream().write_text(text)
    assert base.Ctx().created() == {"link_add": {"ltbr-abc123"}, "mkdir": {"/sys/fs/cgroup/pids/zz/" + CID}}


def test_a_mount_path_names_its_container():
    assert host._owner_of_path(f"/var/lib/labtui/containers/{CID}/merged") == CID
    assert host._owner_of_path("/var/lib/labtui/.trash/x/merged") is None


def test_df_counts_upper_dirs_logs_and_lesson_data(root):
    d = root / "lib" / "containers" / CID
    (d / "upper").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": "web", "created": "", "image_id": "x"}))
    (d / "state.json").write_text("{}")
    (d / "upper" / "f").write_bytes(b"x" * 3000)
    os.link(d / "upper" / "f", d / "upper" / "g")  # a hard link counts once
    (d / "container.log").write_bytes(b"y" * 100)
    (root / "lib" / "lessons" / "intro").mkdir(parents=True)
    (root / "lib" / "lessons" / "intro" / "progress.json").write_bytes(b"z" * 10)
    rows = {r["type"]: r for r in df.usage()["rows"]}
    assert rows["Containers"] == {"type": "Containers", "total": 1, "active": 0, "size": 3000, "reclaimable": 3000}
    assert rows["Logs"]["size"] == 100 and rows["Logs"]["reclaimable"] == 100
    assert rows["Lesson data"]["size"] == 10 and rows["Lesson data"]["reclaimable"] == 0
    assert df.human(0) == "0B" and df.human(3000) == "3kB" and df.human(12_345_678) == "12.3MB"


def test_an_unknown_format_is_an_invalid_argument():
    from labtui.cli import system

    with pytest.raises(InvalidArgument, match="unknown --format 'yaml'"):
        system.cmd_system(argparse.Namespace(system_cmd="check", format="yaml"))
