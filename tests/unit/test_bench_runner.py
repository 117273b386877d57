"""bench/runner.py's pure parts: choosing cases and peers, the runtimes' order, and the archives
it makes of the busybox layer for the peers (no root, no runtime started)."""

from __future__ import annotations

import hashlib
import json
import tarfile

import pytest

from bench import peers as P
from bench import runner


def test_pick_defaults_to_all_and_accepts_families():
    assert runner.pick(None, runner.CASES, "case") == list(runner.CASES)
    assert runner.pick("idle-memory-50,exec", runner.CASES, "case") == ["idle-memory", "exec"]
    assert runner.pick("start", runner.CASES, "case") == ["start-true", "start-bridge"]
    assert runner.pick("docker runc", runner.PEER_ORDER, "peer") == ["docker", "runc"]


def test_pick_refuses_an_unknown_name():
    with pytest.raises(SystemExit, match="unknown peer 'rkt'"):
        runner.pick("rkt", runner.PEER_ORDER, "peer")


def test_ordered_puts_labtui_first_then_the_peers():
    d = {"bwrap": 1, "labtui:tick": 2, "podman": 3, "labtui": 4, "zzz": 5, "runc": 6}
    assert list(runner.ordered(d)) == ["labtui", "labtui:tick", "runc", "podman", "bwrap", "zzz"]


def test_archives_of_the_busybox_layer(tmp_path):
    rootfs = tmp_path / "layer"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(b"\x7fELF fake")
    ctx = P.Ctx(str(tmp_path), log=lambda m: None)
    ctx.rootfs = str(rootfs)
    runner.make_archives(ctx)
    with tarfile.open(ctx.rootfs_tar) as t:
        assert "./bin/busybox" in t.getnames()
    with tarfile.open(ctx.archive) as t:  # docker-save: manifest, config, one layer
        manifest = json.load(t.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["localhost/labtui-bench/import:latest"]
        layer = t.extractfile(manifest[0]["Layers"][0]).read()
        config = json.load(t.extractfile(manifest[0]["Config"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert layer == open(ctx.rootfs_tar, "rb").read()


def test_bridge_names_fit_an_interface_name():
    ctx = P.Ctx("/tmp", log=lambda m: None)
    ctx.bridge = "averyverylongbridgename0"
    assert len(ctx.bridge_name("d")) <= 15
