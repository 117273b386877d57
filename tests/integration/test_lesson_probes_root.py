"""Each lesson probe on the real kernel: passing on the state that should pass it, failing on the
state that should not, with busybox containers started through the CLI.

Four containers are started once for the module (on a network of its own, removed afterwards):
  web   on the network, -m 32m, a port published on 127.0.0.1, /bin/ls deleted, a TCP echo on 8080
  adm   --cap-add SYS_ADMIN, --network host
  priv  --userns private, --network none
  died  ran `exit 3`
Packets go only to loopback and to the network this module made.
"""

from __future__ import annotations

import json
import secrets
import socket
import time

import pytest

from lessons import probes
from lessons.probes import Context
from tests.helpers import inspect, labtui, run_d, wait_for

pytestmark = pytest.mark.root

TAG = secrets.token_hex(3)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def lab():
    names = {k: f"prb{k}{TAG}" for k in ("web", "adm", "priv", "died")}
    net = f"prbnet{TAG}"
    port = _free_port()
    since = time.time()
    try:
        labtui("network", "create", net)
        run_d("--name", names["web"], "--network", net, "-m", "32m", "-p", f"127.0.0.1:{port}:8080", "busybox",
              "sh", "-c", "rm /bin/ls; nc -ll -p 8080 -e cat & exec sleep 600")
        run_d("--name", names["adm"], "--cap-add", "SYS_ADMIN", "--network", "host", "busybox", "sleep", "600")
        run_d("--name", names["priv"], "--userns", "private", "busybox", "sleep", "600")
        labtui("run", "--name", names["died"], "busybox", "sh", "-c", "exit 3", check=False)
        info = inspect(names["web"])["NetworkSettings"]["Networks"][net]
        # the echo server and the whiteout come from the command: wait until it ran
        wait_for(lambda: _tcp_open(port), timeout=10, what="web's TCP echo on the published port")
        yield {**names, "net": net, "port": port, "ip": info["IPAddress"], "gateway": info["Gateway"],
               "prefix": info["IPPrefixLen"], "since": since}
    finally:
        for name in names.values():
            labtui("rm", "-f", name, check=False)
        labtui("network", "rm", net, check=False)


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run(kind: str, ctx: Context | None = None, /, **fields) -> probes.Observation:
    p = probes.get(kind)
    p.validate(fields)  # what the schema does to a lesson's check
    return p.run(ctx or Context(), fields)


def passes(kind: str, /, **fields) -> None:
    obs = run(kind, **fields)
    assert obs.passed, f"{kind} {fields}: {obs.observed} {obs.log}"


def fails(kind: str, /, **fields) -> probes.Observation:
    obs = run(kind, **fields)
    assert obs.passed is False and obs.log, f"{kind} {fields} passed: {obs.observed}"
    return obs


def test_container(lab):
    passes("container", container=lab["web"], status="running")
    passes("container", container=lab["died"], status="exited", exit_code=3)
    fails("container", container=lab["died"], status="running")


def test_status_field_capabilities(lab):
    passes("status_field", container=lab["adm"], field="CapEff", has_caps=["SYS_ADMIN"])
    obs = fails("status_field", container=lab["web"], field="CapEff", has_caps=["SYS_ADMIN"])
    assert "CapEff lacks CAP_SYS_ADMIN" in obs.log
    passes("status_field", container=lab["web"], field="CapEff", lacks_caps=["CAP_SYS_ADMIN"],
           equals="00000000a80425fb")  # docker's default set
    passes("status_field", container=lab["web"], field="Seccomp", equals="2")
    passes("status_field", container=lab["web"], process="init", field="NSpid", matches=r"\s1$")
    fails("status_field", container=lab["web"], field="NoNewPrivs", equals="0")


def test_proc_file_uid_map(lab):
    passes("proc_file", container=lab["priv"], file="uid_map", equals="0 100000 65536")
    fails("proc_file", container=lab["web"], file="uid_map", contains="100000")
    passes("proc_file", container=lab["priv"], file="setgroups", equals="deny")


def test_namespace(lab):
    passes("namespace", container=lab["web"], ns="pid")  # its own, by default
    fails("namespace", container=lab["web"], ns="pid", expect_same=True)
    passes("namespace", container=lab["adm"], ns="net", same_as="host", expect_same=True)
    fails("namespace", container=lab["web"], ns="net", expect_same=True)
    passes("namespace", container=lab["priv"], ns="user", same_as=lab["web"])
    passes("namespace", container=lab["web"], ns="user", same_as=lab["adm"], expect_same=True)


def test_cgroup_file_memory_limit(lab):
    names = {"v1": "memory.limit_in_bytes", "v2": "memory.max"}
    passes("cgroup_file", container=lab["web"], **names, equals="33554432")
    passes("cgroup_file", container=lab["web"], **names, max=32 * 2**20, unlimited=False)
    passes("cgroup_file", container=lab["adm"], **names, unlimited=True, min=2**40)
    fails("cgroup_file", container=lab["adm"], **names, max=32 * 2**20)
    fails("cgroup_file", container=lab["web"], **names, unlimited=True)


def test_cgroup_version_of_this_host(lab):
    from engine import cgroups

    seen = {"unified": "v2", "legacy": "v1", "hybrid": "hybrid"}[cgroups.host_layout().kind]
    passes("cgroup_version", expect=seen)
    fails("cgroup_version", expect="v1" if seen != "v1" else "v2")


def test_link_address_route(lab):
    passes("link", container=lab["web"], name="eth0", state="up", type="veth")
    passes("link", container=lab["web"], name="lo", state="up")
    fails("link", container=lab["priv"], name="eth0")
    bridge = labtui_network_bridge(lab["net"])
    passes("link", name=bridge, type="bridge", state="up")
    passes("address", container=lab["web"], iface="eth0", address=f"{lab['ip']}/{lab['prefix']}")
    fails("address", container=lab["priv"], address=lab["ip"])
    passes("address", iface=bridge, address=lab["gateway"])
    passes("route", container=lab["web"], destination="default", via=lab["gateway"], dev="eth0")
    fails("route", container=lab["priv"], destination="default")


def labtui_network_bridge(net: str) -> str:
    return json.loads(labtui("network", "inspect", net).stdout)[0]["bridge"]


def test_bridge_port(lab):
    passes("bridge_port", container=lab["web"])  # its own network's bridge
    passes("bridge_port", container=lab["web"], bridge=lab["net"])
    passes("bridge_port", container=lab["web"], bridge="lo", exists=False)
    fails("bridge_port", container=lab["priv"])  # no eth0 at all


def test_tcp(lab):
    passes("tcp", host="127.0.0.1", port=lab["port"])
    fails("tcp", host="127.0.0.1", port=_free_port())
    passes("tcp", host=lab["web"], port=8080)  # the host reaches the bridge address
    passes("tcp", **{"from": lab["priv"]}, host=lab["web"], port=8080, expect_open=False)  # no route
    fails("tcp", **{"from": lab["priv"]}, host=lab["web"], port=8080)


def test_path_whiteout_in_upper(lab):
    passes("path", container=lab["web"], where="upper", path="/bin/ls", is_whiteout=True)
    passes("path", container=lab["web"], where="rootfs", path="/bin/ls", exists=False)
    fails("path", container=lab["priv"], where="upper", path="/bin/ls", is_whiteout=True)
    passes("path", container=lab["priv"], where="rootfs", path="/bin/ls", type="symlink")  # to busybox
    passes("path", container=lab["web"], path="/etc/hostname", matches=r"\w")


def test_exec(lab):
    passes("exec", container=lab["web"], cmd="echo hello; exit 4", exit_code=4, equals="hello")
    passes("exec", container=lab["web"], cmd="mount -t tmpfs none /tmp", fails=True)
    passes("exec", container=lab["adm"], cmd="mount -t tmpfs none /tmp && umount /tmp")
    obs = fails("exec", container=lab["web"], cmd="exit 1")
    assert obs.observed == "exit 1"
    t = time.monotonic()
    slow = fails("exec", container=lab["web"], cmd="sleep 30", timeout=1)
    assert "did not finish within 1 s" in slow.log[0] and time.monotonic() - t < 6
    fails("exec", container=lab["died"], cmd="true")


def test_step_uid_map_before_execve(lab):
    since = Context(since=lab["since"])
    uid_map = {"mechanism": "userns", "op": "write uid_map"}
    execve = {"mechanism": "exec", "op": "execve"}
    obs = run("step", since, container=lab["priv"], **uid_map, result="ok", before=execve)
    assert obs.passed, obs.log
    assert not run("step", since, container=lab["priv"], **execve, before=uid_map).passed
    assert not run("step", since, container=lab["web"], **uid_map).passed  # no user namespace
    assert run("step", since, container=lab["web"], mechanism="userns", count_max=0).passed
    assert run("step", since, container=lab["web"], mechanism="namespace", op="clone",
               value_matches="CLONE_NEWPID").passed


def test_event_died_with_its_code(lab):
    since = Context(since=lab["since"])
    assert run("event", since, container=lab["died"], type="died", fields={"exit_code": 3}).passed
    obs = run("event", since, container=lab["died"], type="died", fields={"exit_code": 137})
    assert not obs.passed and "'exit_code': 3" in " ".join(obs.log)
    assert run("event", since, container=lab["web"], type="started").passed
    assert run("event", since, container=lab["web"], type="died", count_max=0).passed
