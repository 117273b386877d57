"""/etc/hosts rendering and in-place rewriting; names, MACs; the cheap import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import paths
from engine.network import hosts, ipam
from engine.network.veth import host_veth_name, mac_for_ip

MEMBERS = [
    {"id": "c1", "name": "web", "ip": "10.88.0.2", "aliases": ["www", "frontend"]},
    {"id": "c2", "name": "db", "ip": "10.88.0.3", "aliases": []},
]


@pytest.fixture(autouse=True)
def lt_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path))
    return tmp_path


def test_render_hosts_for_a_member() -> None:
    text = hosts.render_hosts("c1", "c1host", MEMBERS)
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.88.0.2\tc1host web www frontend" in lines
    assert "10.88.0.3\tdb" in lines
    assert text.endswith("\n")


def test_render_hosts_dedups_and_handles_no_network() -> None:
    assert "10.88.0.3\tdb\n" in hosts.render_hosts("c2", "db", MEMBERS)
    alone = hosts.render_hosts("c9", "lonely", [])
    assert alone.endswith("127.0.1.1\tlonely\n")
    assert "10.88" not in alone


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    hosts.write_in_place(f, "a much longer first version\n" * 10)
    ino = f.stat().st_ino
    hosts.write_in_place(f, "short\n")
    assert f.read_text() == "short\n"
    assert f.stat().st_ino == ino


def test_refresh_writes_every_existing_member(tmp_path: Path) -> None:
    for cid in ("c1", "c2"):
        paths.container_dir(cid).mkdir(parents=True)
    written = hosts.refresh_network_hosts("n", MEMBERS + [{"id": "gone", "name": "x", "ip": "10.88.0.9"}])
    assert written == ["c1", "c2"]
    assert "10.88.0.3\tdb" in hosts.hosts_path("c1").read_text()
    assert "10.88.0.2\tweb www frontend" in hosts.hosts_path("c2").read_text()
    assert not paths.container_dir("gone").exists()


def test_refresh_defaults_to_attached_leases() -> None:
    with ipam.store_lock():
        ipam.save_network(ipam.new_network_record("n", "10.213.7.0/24", None, None, []))
    for cid, name in (("c1", "web"), ("c2", "db")):
        paths.container_dir(cid).mkdir(parents=True)
        ipam.allocate("n", cid, name=name, hostname=name)
        ipam.update_lease("n", cid, attached=True)
    assert hosts.refresh_network_hosts("n") == ["c1", "c2"]
    assert "10.213.7.3\tdb" in hosts.hosts_path("c1").read_text()
    ipam.update_lease("n", "c2", attached=False)
    hosts.refresh_network_hosts("n")
    assert "db" not in hosts.hosts_path("c1").read_text()


def test_host_veth_names_fit_ifnamsiz() -> None:
    cid = "0123456789abcdef" * 4
    assert host_veth_name(cid) == "lt0123456789"
    odd = host_veth_name("my container")
    assert len(odd) == 12 and odd.startswith("lt")
    assert host_veth_name("my container") == odd


def test_mac_follows_the_address() -> None:
    assert mac_for_ip("10.88.0.2") == "02:42:0a:58:00:02"


def test_import_is_cheap_and_pyroute2_free() -> None:
    code = "import sys, engine.network; sys.exit('pyroute2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
