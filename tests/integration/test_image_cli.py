"""`labtui image import/ls/rm` and running what was imported, through the CLI on the real kernel."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.helpers import labtui, lib

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def busybox_layer() -> bytes:
    """The built-in busybox image's layer, as a tar (what a base image layer would be)."""
    labtui("run", "--rm", "busybox", "true")
    img = json.loads((lib() / "images" / "busybox" / "latest.json").read_text())
    root = lib() / "layers" / img["layers"][0]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(root, arcname=".")
    return buf.getvalue()


def small_layer(entries: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def docker_save(path: Path, layers: list[bytes], config: dict, tag: str) -> Path:
    diff_ids = [f"sha256:{hashlib.sha256(b).hexdigest()}" for b in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config,
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    files = {cfg_name: cfg}
    names = []
    for i, b in enumerate(layers):
        files[f"l{i}/layer.tar"] = b
        names.append(f"l{i}/layer.tar")
    files["manifest.json"] = json.dumps([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def test_import_run_and_remove(tmp_path):
    base = busybox_layer()
    top = small_layer({"app/": None, "app/hello.txt": b"from layer two\n", "bin/.wh.ls": b"", "etc/.wh.motd": b""})
    config = {"Env": ["PATH=/bin", "GREETING=hi"], "Entrypoint": ["/bin/sh", "-c"],
              "Cmd": ["echo $GREETING from $(pwd); cat hello.txt"], "WorkingDir": "/app"}
    tarball = docker_save(tmp_path / "img.tar", [base, top], config, "lab/hello:1.0")
    out = labtui("image", "import", str(tarball)).stdout
    assert "lab/hello:1.0" in out
    rows = [json.loads(line) for line in labtui("image", "ls", "--format", "json").stdout.splitlines()]
    assert any(r["name"] == "lab/hello" and r["tag"] == "1.0" and len(r["layers"]) == 2 for r in rows)
    p = labtui("run", "--name", "hello", "lab/hello:1.0")
    assert p.stdout == "hi from /app\nfrom layer two\n"
    # the whiteout in layer two hides /bin/ls of layer one
    assert labtui("run", "--rm", "--entrypoint", "", "lab/hello:1.0", "ls", check=False).returncode == 127
    p = labtui("image", "rm", "lab/hello:1.0", check=False)
    assert p.returncode != 0 and "in use" in p.stderr
    labtui("rm", "hello")
    labtui("image", "rm", "lab/hello:1.0")
    assert not (lib() / "images" / "lab" / "hello" / "1.0.json").exists()


def test_image_without_command_needs_one(tmp_path):
    tarball = docker_save(tmp_path / "nocmd.tar", [busybox_layer()], {"Env": ["PATH=/bin"]}, "lab/nocmd:latest")
    labtui("image", "import", str(tarball))
    p = labtui("run", "--rm", "lab/nocmd", check=False)
    assert p.returncode == 125 and "no command specified" in p.stderr
    assert labtui("run", "--rm", "lab/nocmd", "true").returncode == 0
    labtui("image", "rm", "lab/nocmd")


def test_corrupt_tarball_is_refused_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive" * 100)
    before = sorted(os.listdir(lib() / "layers")), sorted(os.listdir(lib() / "images"))
    p = labtui("image", "import", str(bad), check=False)
    assert p.returncode == 125 and "cannot import" in p.stderr and "Traceback" not in p.stderr
    assert (sorted(os.listdir(lib() / "layers")), sorted(os.listdir(lib() / "images"))) == before
