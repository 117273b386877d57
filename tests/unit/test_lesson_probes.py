"""The lesson probes without containers: their fields, expect(), and the step/event streams read
from hand-made files in a private LABTUI_ROOT. tests/integration/test_lesson_probes_root.py runs
each probe against real containers."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from lessons import probes
from lessons.probes import Context, ParamError, expect, kernel, streams, target

ALL = ("container", "proc_file", "status_field", "namespace", "cgroup_file", "cgroup_version", "link",
       "address", "route", "bridge_port", "tcp", "path", "exec", "step", "event")

# The smallest valid fields of each probe (what a curriculum author writes at least).
MINIMAL = {
    "container": {"container": "web"},
    "proc_file": {"container": "web", "file": "uid_map"},
    "status_field": {"container": "web", "field": "CapEff"},
    "namespace": {"container": "web", "ns": "pid"},
    "cgroup_file": {"container": "web", "v1": "memory.limit_in_bytes", "v2": "memory.max"},
    "cgroup_version": {},
    "link": {"name": "eth0"},
    "address": {"address": "10.0.0.2/24"},
    "route": {"destination": "default"},
    "bridge_port": {"container": "web"},
    "tcp": {"port": 80},
    "path": {"path": "/etc/hostname"},
    "exec": {"container": "web", "cmd": "true"},
    "step": {"container": "web"},
    "event": {"type": "died"},
}


# ---- the registry and the fields -----------------------------------------------------------

def test_every_probe_of_the_design_is_registered():
    assert set(ALL) <= set(probes.names())


@pytest.mark.parametrize("name", ALL)
def test_no_probe_field_is_a_field_of_the_check_itself(name):
    # A check's table holds kind = "namespace" and the probe's fields side by side: a probe
    # field named kind (or id, points, ...) could never be written.
    from lessons.core.schema import CHECK_FIELDS

    p = probes.get(name)
    assert not (set(p.required) | set(p.optional)) & CHECK_FIELDS


@pytest.mark.parametrize("name", ALL)
def test_minimal_fields_validate_and_describe(name):
    p = probes.get(name)
    p.validate(MINIMAL[name])
    text = p.describe(MINIMAL[name])
    assert isinstance(text, str) and text and "{" not in text


@pytest.mark.parametrize("name", [n for n in ALL if probes.get(n).required])
def test_each_required_field_is_required(name):
    p = probes.get(name)
    for key in p.required:
        fields = {k: v for k, v in MINIMAL[name].items() if k != key}
        with pytest.raises(ParamError, match=f"needs the field '{key}'"):
            p.validate(fields)


@pytest.mark.parametrize("name", ALL)
def test_an_unknown_field_is_named_with_the_allowed_ones(name):
    with pytest.raises(ParamError, match="unknown field 'bogus'") as e:
        probes.get(name).validate({**MINIMAL[name], "bogus": 1})
    assert e.value.field == "bogus"


@pytest.mark.parametrize(("name", "fields", "bad"), [
    ("tcp", {"port": "80"}, "port"),
    ("tcp", {"port": 80, "expect_open": "yes"}, "expect_open"),
    ("exec", {"container": "w", "cmd": "true", "exit_code": True}, "exit_code"),
    ("exec", {"container": "w", "cmd": "true", "timeout": "5"}, "timeout"),
    ("status_field", {"container": "w", "field": "CapEff", "has_caps": "SYS_ADMIN"}, "has_caps"),
    ("step", {"container": "w", "before": "execve"}, "before"),
    ("step", {"container": "w", "count_min": 1.5}, "count_min"),
    ("event", {"type": "died", "fields": ["exit_code"]}, "fields"),
    ("namespace", {"container": "w", "ns": "pid", "expect_same": 1}, "expect_same"),
    ("cgroup_file", {"container": "w", "v1": "pids.max", "min": "10"}, "min"),
    ("path", {"path": "/x", "matches": "("}, "matches"),
])
def test_a_field_of_the_wrong_type_is_refused(name, fields, bad):
    with pytest.raises(ParamError) as e:
        probes.get(name).validate(fields)
    assert e.value.field == bad


def test_expect_vocabulary():
    assert expect("00000000a80425fb", {"equals": "00000000a80425fb"}) == (True, [])
    assert expect(" 0 100000 65536 ", {"contains": "100000", "not_contains": "4294967295"})[0]
    assert expect("2", {"min": 1, "max": 2})[0]
    assert not expect("3", {"max": 2})[0]
    assert expect(None, {"exists": False})[0]
    ok, why = expect("abc", {"matches": r"^\d+$"})
    assert not ok and "match" in why[0]
    ok, why = expect("max", {"min": 1})
    assert not ok and "expected a number" in why[0]


def test_whitespace_is_normalised_as_the_kernel_pads_columns():
    assert kernel._normalise("         0     100000      65536\n") == "0 100000 65536"
    assert kernel._normalise("0 0 1\n  1\t2 3\n") == "0 0 1\n1 2 3"


# ---- records of a fake container in a private state ------------------------------------------

@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path))
    (tmp_path / "lib" / "containers").mkdir(parents=True)
    (tmp_path / "lib" / "names").mkdir()
    return tmp_path / "lib"


def make_container(lib: Path, name: str, cid: str, state: dict | None = None, steps: list[dict] | None = None) -> Path:
    d = lib / "containers" / cid
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"name": name, "created": "2026-01-01T00:00:00Z", "argv": ["true"]}))
    (d / "state.json").write_text(json.dumps(state or {}))
    os.symlink(cid, lib / "names" / name)
    if steps is not None:
        write_jsonl(d / "steps.jsonl", steps)
    return d


def write_jsonl(path: Path, recs: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + tail)


CID = "ab" * 32
OTHER = "cd" * 32


def test_a_short_name_never_finds_a_container_by_id_prefix(root):
    make_container(root, "web", CID)
    assert target.container("web").id == CID
    assert target.container(CID[:12]).id == CID
    with pytest.raises(probes.ProbeError, match="no container named 'ab'"):
        target.container("ab")  # a hex name that only prefixes web's ID


def test_container_probe_reads_status_and_exit_code(root):
    make_container(root, "web", CID, {"started_at": "2026-01-01T00:00:01Z", "exit_code": 3, "restart_count": 2})
    run = probes.get("container").run
    assert run(Context(), {"container": "web", "status": "exited", "exit_code": 3, "restarts_min": 2}).passed
    obs = run(Context(), {"container": "web", "status": "running"})
    assert not obs.passed and obs.observed == "exited" and "not running" in obs.log[0]
    assert not run(Context(), {"container": "web", "exit_code": 0}).passed
    assert run(Context(), {"container": "nope"}).log == ["there is no container named 'nope'"]


def test_a_probe_that_needs_a_running_container_says_so(root):
    make_container(root, "web", CID, {"started_at": "2026-01-01T00:00:01Z", "exit_code": 0})
    for name in ("proc_file", "status_field", "namespace", "cgroup_file", "exec"):
        obs = probes.get(name).run(Context(), MINIMAL[name])
        assert not obs.passed and obs.log == ["container web is exited, not running: its processes cannot be looked at"]


STEPS = [
    {"seq": 1, "ts": 100.0, "mechanism": "namespace", "op": "clone", "value": "CLONE_NEWUSER|CLONE_NEWPID",
     "result": "ok"},
    {"seq": 2, "ts": 100.1, "mechanism": "userns", "op": "write setgroups", "target": "/proc/9/setgroups",
     "value": "deny", "result": "ok"},
    {"seq": 3, "ts": 100.2, "mechanism": "userns", "op": "write uid_map", "target": "/proc/9/uid_map",
     "value": "0 100000 65536", "result": "EPERM", "errno": 1},
    {"seq": 4, "ts": 100.3, "mechanism": "userns", "op": "write uid_map", "target": "/proc/9/uid_map",
     "value": "0 100000 65536", "result": "ok"},
    # numbered before the mount it follows: the child's steps reach the supervisor late
    {"seq": 5, "ts": 100.6, "mechanism": "cgroup", "op": "write", "target": "memory.limit_in_bytes", "result": "ok"},
    {"seq": 6, "ts": 100.5, "mechanism": "mount", "op": "mount", "target": "/proc", "result": "ok"},
    {"seq": 7, "ts": 100.9, "mechanism": "exec", "op": "execve", "target": "sleep", "result": "ok"},
]


def step(fields: dict, since: float = 0.0) -> probes.Observation:
    p = probes.get("step")
    p.validate({"container": "web", **fields})
    return p.run(Context(since=since), {"container": "web", **fields})


def test_step_found_by_mechanism_op_and_result(root):
    make_container(root, "web", CID, steps=STEPS)
    assert step({"mechanism": "userns", "op": "write uid_map", "result": "ok"}).passed
    assert step({"mechanism": "userns", "op": "write uid_map", "result": "eperm"}).passed  # errno names, any case
    assert step({"mechanism": "namespace", "value_matches": "CLONE_NEWUSER"}).passed
    assert step({"mechanism": "userns", "target_matches": r"/uid_map$", "count_min": 2}).passed
    obs = step({"mechanism": "userns", "op": "write gid_map"})
    assert not obs.passed and "0 matching steps" in obs.log[0]
    assert "steps of that kind" not in " ".join(obs.log)  # nothing of that op to show


def test_step_failure_shows_the_steps_of_that_kind(root):
    make_container(root, "web", CID, steps=STEPS[:3])
    obs = step({"mechanism": "userns", "op": "write uid_map", "result": "ok"})
    assert not obs.passed and "#3 userns write uid_map /proc/9/uid_map -> EPERM" in obs.log[1]


def test_step_count_max_zero_means_it_never_happened(root):
    make_container(root, "web", CID, steps=STEPS)
    assert step({"mechanism": "seccomp", "count_max": 0}).passed
    obs = step({"result": "EPERM", "count_max": 0})
    assert not obs.passed and "at most 0" in obs.log[0]


def test_step_before_orders_by_when_the_steps_ran(root):
    make_container(root, "web", CID, steps=STEPS)
    ok = step({"mechanism": "userns", "op": "write uid_map", "result": "ok",
               "before": {"mechanism": "exec", "op": "execve"}})
    assert ok.passed, ok.log
    late = step({"mechanism": "exec", "op": "execve", "before": {"mechanism": "userns", "op": "write uid_map"}})
    assert not late.passed and "came first" in late.log[0]
    # seq says cgroup (5) before mount (6); ts says the mount ran first
    assert step({"mechanism": "mount", "before": {"mechanism": "cgroup"}}).passed
    missing = step({"mechanism": "mount", "before": {"mechanism": "seccomp"}})
    assert not missing.passed and "no step matching" in missing.log[0]


def test_step_since_skips_an_earlier_run(root):
    make_container(root, "web", CID, steps=STEPS)
    assert not step({"op": "clone"}, since=100.05).passed
    assert step({"op": "execve"}, since=100.05).passed


def test_step_fields_are_checked(root):
    make_container(root, "web", CID, steps=STEPS)
    assert "not a regular expression" in step({"target_matches": "("}).log[0]
    assert "before: unknown step field 'opp'" in step({"op": "clone", "before": {"opp": "x"}}).log[0]


def test_a_line_being_written_is_skipped(root):
    d = make_container(root, "web", CID)
    write_jsonl(d / "steps.jsonl", STEPS, tail='{"seq": 8, "mech')
    assert len(streams.container_steps("web")) == len(STEPS)


def test_a_removed_container_s_steps_come_from_the_host_stream(root):
    write_jsonl(root / "events.jsonl", [{"ts": 99.0, "type": "created", "container": CID, "name": "gone"},
                                        {"ts": 101.0, "type": "removed", "container": CID, "name": "gone"}])
    write_jsonl(root / "steps.jsonl", [{**s, "container": CID} for s in STEPS]
                + [{"seq": 1, "ts": 100.0, "container": OTHER, "mechanism": "seccomp", "op": "load", "result": "ok"}])
    p = probes.get("step")
    assert p.run(Context(), {"container": "gone", "op": "execve"}).passed
    assert not p.run(Context(), {"container": "gone", "mechanism": "seccomp"}).passed
    assert "none was recorded" in p.run(Context(), {"container": "never"}).log[0]


EVENTS = [
    {"ts": 100.0, "type": "started", "container": CID, "name": "web", "pid": 9},
    {"ts": 101.0, "type": "seccomp_denied", "container": CID, "name": "web", "syscall": "mount", "pid": 10},
    {"ts": 102.0, "type": "died", "container": CID, "name": "web", "exit_code": 137, "signal": "SIGKILL"},
    {"ts": 102.1, "type": "oom", "container": CID, "name": "web", "exit_code": 137},
    {"ts": 103.0, "type": "died", "container": OTHER, "name": "db", "exit_code": 0},
]


def event(fields: dict, since: float = 0.0) -> probes.Observation:
    p = probes.get("event")
    p.validate(fields)
    return p.run(Context(since=since), fields)


def test_event_matching(root):
    make_container(root, "web", CID)
    write_jsonl(root / "events.jsonl", EVENTS)
    assert event({"container": "web", "type": "died", "fields": {"exit_code": 137}}).passed
    assert event({"container": "web", "type": "died", "fields": {"exitCode": 137}}).passed  # docker's spelling
    assert event({"container": "web", "type": "seccomp_denied", "fields": {"syscall": "mount"}}).passed
    assert event({"container": "db", "type": "died"}).passed  # removed: matched by its name
    assert event({"type": "died", "count_min": 2}).passed  # any container
    assert event({"container": "web", "type": "restarted", "count_max": 0}).passed
    wrong = event({"container": "web", "type": "died", "fields": {"exit_code": 0}})
    assert not wrong.passed and "'exit_code': 137" in wrong.log[1]
    assert not event({"container": "web", "type": "oom"}, since=102.5).passed


def test_match_tables_for_hint_triggers():
    s = {"mechanism": "userns", "op": "write uid_map", "result": "EPERM", "target": "/proc/9/uid_map"}
    assert streams.match_step(s, {"mechanism": "userns", "op": "write uid_map", "result": "EPERM"})
    assert not streams.match_step(s, {"mechanism": "userns", "result": "ok"})
    assert streams.match_event({"type": "oom", "exit_code": 137}, {"type": "oom"})
    assert not streams.match_event({"type": "oom"}, {"type": "oom", "exit_code": 137})
    with pytest.raises(probes.ProbeError, match="unknown step field"):
        streams.check_step_table({"mechansim": "userns"}, "hint")


# ---- files, cgroups, TCP: without containers -------------------------------------------------

def look(fields: dict) -> probes.Observation:
    p = probes.get("path")
    p.validate(fields)
    return p.run(Context(), fields)


def test_path_on_the_host(tmp_path):
    f = tmp_path / "note.txt"
    f.write_text("hello kernel\n")
    assert look({"path": str(f), "type": "file", "contains": "kernel"}).passed
    assert look({"path": str(tmp_path / "absent"), "exists": False}).passed
    obs = look({"path": str(tmp_path / "absent")})
    assert not obs.passed and "does not exist" in obs.log[0]
    assert not look({"path": str(tmp_path), "contains": "x"}).passed  # a directory has no text
    assert "absolute" in look({"path": "relative/x"}).log[0]
    assert "where must be" in look({"path": "/x", "where": "merged", "container": "w"}).log[0]


def test_symlinks_resolve_inside_the_root(tmp_path):
    # A container's absolute symlink must not lead the probe to the host's file.
    (tmp_path / "etc").mkdir()
    os.symlink("/etc/hostname", tmp_path / "escape")
    os.symlink("/etc/mine", tmp_path / "inside")
    (tmp_path / "etc" / "mine").write_text("in the root")
    assert kernel._look(str(tmp_path), "/escape") == ("symlink", False, None)
    assert kernel._look(str(tmp_path), "/inside") == ("symlink", False, "in the root")
    assert kernel._look(str(tmp_path), "/escape/../etc/mine")[0] is None  # /etc/hostname: not in the root


def test_a_whiteout_is_a_zero_zero_character_device(tmp_path):
    try:
        os.mknod(tmp_path / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    assert look({"path": str(tmp_path / "gone"), "is_whiteout": True, "type": "whiteout"}).passed
    assert not look({"path": str(tmp_path / "gone"), "is_whiteout": False}).passed


def test_cgroup_unlimited_values():
    assert kernel._unlimited("max") and kernel._unlimited("9223372036854771712")
    assert not kernel._unlimited("33554432") and not kernel._unlimited(None) and not kernel._unlimited("x")


class FakeC:
    id = CID
    name = "web"


@pytest.mark.parametrize(("dirs", "fields", "want"), [
    ({"unified": "/cg/w", "memory": "/cg/w"}, {"v1": "memory.limit_in_bytes", "v2": "memory.max"},
     ("v2", "/cg/w/memory.max")),
    ({"memory": "/m/w", "pids": "/p/w"}, {"v1": "memory.limit_in_bytes", "v2": "memory.max"},
     ("v1", "/m/w/memory.limit_in_bytes")),
    ({"memory": "/m/w", "pids": "/p/w"}, {"v1": "cgroup.procs"}, ("v1", "/m/w/cgroup.procs")),
])
def test_cgroup_file_picks_the_name_of_the_container_s_version(monkeypatch, dirs, fields, want):
    from engine import api

    monkeypatch.setattr(api, "cgroup_paths", lambda ref: dirs)
    assert kernel._cgroup_file_path(FakeC(), fields) == want


@pytest.mark.parametrize(("dirs", "fields", "message"), [
    ({"memory": "/m/w"}, {"v2": "memory.max"}, "names no v1 file"),
    ({"memory": "/m/w"}, {"v1": "cpu.shares"}, "no cpu controller"),
    ({"memory": "/m/w"}, {"v1": "../../etc/passwd"}, "must be a file name"),
    ({}, {"v1": "memory.limit_in_bytes"}, "has no cgroups"),
])
def test_cgroup_file_says_why_it_cannot_look(monkeypatch, dirs, fields, message):
    from engine import api

    monkeypatch.setattr(api, "cgroup_paths", lambda ref: dirs)
    with pytest.raises(probes.ProbeError, match=message):
        kernel._cgroup_file_path(FakeC(), fields)


@pytest.mark.parametrize(("kind", "expect_", "driver", "passed"), [
    ("hybrid", "hybrid", "v1", True), ("unified", "v2", "v2", True), ("legacy", "v1", "v1", True),
    ("hybrid", "v2", None, False), ("hybrid", None, "v2", False),
])
def test_cgroup_version(monkeypatch, kind, expect_, driver, passed):
    from engine import cgroups

    monkeypatch.setattr(cgroups, "host_layout", lambda refresh=False: cgroups.Layout(kind=kind))
    fields = {k: v for k, v in (("expect", expect_), ("driver", driver)) if v}
    assert probes.get("cgroup_version").run(Context(), fields).passed is passed


def test_tcp_from_the_host_on_loopback():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        p = probes.get("tcp")
        assert p.run(Context(), {"port": port}).passed
        assert p.run(Context(), {"host": "localhost", "port": port}).observed == f"127.0.0.1:{port} open"
    finally:
        srv.close()
    obs = probes.get("tcp").run(Context(), {"port": port})
    assert not obs.passed and "refused" in obs.observed
    assert probes.get("tcp").run(Context(), {"port": port, "expect_open": False}).passed
    assert "1 to 65535" in probes.get("tcp").run(Context(), {"port": 70000}).log[0]


def test_the_network_probes_import_pyroute2_only_when_they_run():
    import subprocess
    import sys

    code = "import sys, lessons.probes as p; p.names(); print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False", out.stderr


# ---- /proc and cgroup files, read from this test's own process and a fake cgroup dir -----------

@pytest.fixture
def me(monkeypatch):
    """The probes' container process is this test process (its /proc files are real)."""
    monkeypatch.setattr(target, "process_of", lambda name, process="main": os.getpid())
    monkeypatch.setattr(target, "running", lambda name: FakeC())
    return os.getpid()


def test_proc_file_and_status_field_of_a_process(me):
    def run(kind: str, **fields) -> probes.Observation:
        probes.get(kind).validate({"container": "web", **fields})
        return probes.get(kind).run(Context(), {"container": "web", **fields})

    assert run("proc_file", file="status", matches=r"^Pid: \d+$").passed  # tabs normalised to one space
    assert not run("proc_file", file="no_such_file").passed
    assert run("proc_file", file="no_such_file", exists=False).passed
    assert "must name a file of /proc/PID" in run("proc_file", file="../1/environ").log[0]
    assert run("status_field", field="Pid", equals=str(me)).passed
    absent = run("status_field", field="NoSuchField")
    assert not absent.passed and absent.observed == "(absent)"
    bnd = int(dict(line.split(":\t") for line in open("/proc/self/status").read().splitlines())["CapBnd"], 16)
    from engine import capabilities

    has_all = all(bnd >> b & 1 for b in capabilities.all_caps())
    assert run("status_field", field="CapBnd", has_caps=["ALL"]).passed is has_all
    assert "unknown capability 'FOO'" in run("status_field", field="CapEff", lacks_caps=["FOO"]).log[0]


def test_namespace_of_a_process_in_the_host_s_namespaces(me):
    p = probes.get("namespace")
    assert p.run(Context(), {"container": "web", "ns": "net", "expect_same": True}).passed
    obs = p.run(Context(), {"container": "web", "ns": "pid"})
    assert not obs.passed and "the same namespace" in obs.log[0]
    assert "ns must be one of" in p.run(Context(), {"container": "web", "ns": "netns"}).log[0]


def test_cgroup_file_numbers(me, tmp_path, monkeypatch):
    from engine import api

    monkeypatch.setattr(api, "cgroup_paths", lambda ref: {"memory": str(tmp_path), "pids": str(tmp_path)})
    (tmp_path / "memory.limit_in_bytes").write_text("33554432\n")
    (tmp_path / "pids.max").write_text("9223372036854771712\n")

    def run(**fields) -> probes.Observation:
        probes.get("cgroup_file").validate({"container": "web", **fields})
        return probes.get("cgroup_file").run(Context(), {"container": "web", **fields})

    assert run(v1="memory.limit_in_bytes", v2="memory.max", equals="33554432", max=32 * 2**20).passed
    low = run(v1="memory.limit_in_bytes", max=2**20)
    assert not low.passed and "at most" in low.log[0] and low.log[-1].startswith("read ")
    assert run(v1="pids.max", unlimited=True, min=10**6).passed
    assert not run(v1="pids.max", max=100).passed  # no limit counts as infinite
    assert not run(v1="memory.limit_in_bytes", unlimited=True).passed
    assert not run(v1="memory.soft_limit_in_bytes").passed  # absent
    assert run(v1="memory.soft_limit_in_bytes", exists=False).passed
