"""The image store as root, against the real kernel: busybox, whiteouts, overlayfs, concurrency.

The archives are built here with tarfile; the overlay mounts are the kernel's own, so these tests
check that what we extract means what docker meant by it once overlayfs reads it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from engine import images, paths, syscalls
from engine.errors import Conflict, InvalidArgument

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

MTIME = 1_700_000_000
CONFIG = {"Env": ["PATH=/usr/bin:/bin", "GREETING=hi there"], "Cmd": ["--port", "80"],
          "Entrypoint": ["/usr/bin/web"], "WorkingDir": "/data", "User": "1000:1000"}


# --- archive builders (small, so each test shows what its layers hold) ----------------------


def entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, mode: int | None = None,
          uid: int = 0, gid: int = 0, dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.uid, ti.gid, ti.mtime = kind, uid, gid, MTIME
    ti.devmajor, ti.devminor = dev
    ti.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_outer(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def config_blob(layers: list[bytes]) -> bytes:
    plain = [gzip.decompress(x) if x[:2] == b"\x1f\x8b" else x for x in layers]
    diff_ids = [f"sha256:{sha(x)}" for x in plain]
    return json.dumps({"architecture": images._host_arch(), "os": "linux", "config": CONFIG,
                       "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()


def docker_save(path: Path, layers: list[bytes], tag: str = "lab/web:1.0") -> Path:
    files = {f"{sha(x)}/layer.tar": x for x in layers}
    cfg = config_blob(layers)
    files[f"{sha(cfg)}.json"] = cfg
    files["manifest.json"] = json.dumps(
        [{"Config": f"{sha(cfg)}.json", "RepoTags": [tag], "Layers": [f"{sha(x)}/layer.tar" for x in layers]}]
    ).encode()
    return write_outer(path, files)


def oci_layout(path: Path, layers: list[bytes], tag: str = "lab/web:1.0") -> Path:
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    descs = []
    for x in layers:
        files[f"blobs/sha256/{sha(x)}"] = x
        gz = "+gzip" if x[:2] == b"\x1f\x8b" else ""
        descs.append({"mediaType": f"application/vnd.oci.image.layer.v1.tar{gz}", "digest": f"sha256:{sha(x)}",
                      "size": len(x)})
    cfg = config_blob(layers)
    files[f"blobs/sha256/{sha(cfg)}"] = cfg
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{sha(cfg)}", "size": len(cfg)},
                           "layers": descs}).encode()
    files[f"blobs/sha256/{sha(manifest)}"] = manifest
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{sha(manifest)}",
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}]}).encode()
    return write_outer(path, files)


def base_layer() -> bytes:
    return make_tar([
        entry("etc", kind=tarfile.DIRTYPE),
        entry("etc/keep.txt", b"kept\n"),
        entry("etc/gone.txt", b"deleted by the layer above\n"),
        entry("data", kind=tarfile.DIRTYPE),
        entry("data/old.txt", b"hidden by the opaque dir above\n"),
        entry("data/sub", kind=tarfile.DIRTYPE),
        entry("data/sub/deep.txt", b"also hidden\n"),
        entry("home/user/tool", b"\x7fELF...", mode=0o4750, uid=1000, gid=1001),
        entry("dev/null", kind=tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        entry("run/fifo", kind=tarfile.FIFOTYPE, mode=0o600),
    ])


def top_layer() -> bytes:
    """Deletes etc/gone.txt, makes data/ opaque and puts a new file in it; gzip'd."""
    return make_tar([
        entry("etc/.wh.gone.txt"),
        entry("data", kind=tarfile.DIRTYPE, mode=0o775),
        entry("data/.wh..wh..opq"),
        entry("data/new.txt", b"only this\n"),
    ], gz=True)


def lib_snapshot() -> list[tuple]:
    out = []
    for dirpath, dirs, files in os.walk(paths.lib_dir()):
        for n in dirs + files:
            p = Path(dirpath, n)
            st = p.lstat()
            out.append((str(p.relative_to(paths.lib_dir())), stat.S_IFMT(st.st_mode), st.st_size, st.st_rdev))
    return sorted(out)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path / "state"))
    return tmp_path


@pytest.fixture
def busybox_binary() -> str:
    for _ in range(120):  # busybox-static may still be being installed by apt
        if os.path.exists("/bin/busybox"):
            return "/bin/busybox"
        time.sleep(1)
    pytest.fail("/bin/busybox did not appear: apt-get install busybox-static")


# --- busybox ------------------------------------------------------------------------------


def test_busybox_image_is_built_and_runs(root: Path, busybox_binary: str) -> None:
    img = images.resolve("busybox")
    assert img.ref == "busybox:latest"
    assert images.resolve("busybox:latest") == img  # the second time it is just read
    assert img.config == {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                          "Cmd": ["sh"], "Entrypoint": None, "WorkingDir": "", "User": ""}
    (layer,) = img.layer_paths()
    assert layer.parent == paths.layers_dir()

    bb = layer / "bin/busybox"
    assert bb.is_file() and not bb.is_symlink()
    assert bb.read_bytes() == Path(busybox_binary).read_bytes()
    assert stat.S_IMODE(bb.stat().st_mode) == 0o755
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"
    listed = subprocess.run([busybox_binary, "--list-full"], capture_output=True, text=True).stdout.split()
    for applet in (a for a in listed if "/" in a and a != "bin/busybox"):
        assert os.readlink(layer / applet) == "/bin/busybox", applet

    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((layer / "root").stat().st_mode) == 0o700
    for d in ("etc", "root", "home", "proc", "sys", "dev", "run", "var"):
        assert (layer / d).is_dir(), d
    passwd = (layer / "etc/passwd").read_text().splitlines()
    assert passwd[0] == "root:x:0:0:root:/root:/bin/sh"
    assert any(line.startswith("nobody:x:65534:65534:") for line in passwd)
    assert (layer / "etc/group").read_text().startswith("root:x:0:")
    for f in ("hostname", "hosts", "resolv.conf"):  # bind-mount targets
        assert (layer / "etc" / f).read_bytes() == b""

    # The layer is a usable root filesystem on its own: a static shell runs inside it.
    out = subprocess.run(["chroot", str(layer), "/bin/sh", "-c", "echo $((6*7)); id -u; ls /bin/sh"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["42", "0", "/bin/sh"]


def test_twenty_processes_resolve_busybox_at_once(root: Path, busybox_binary: str) -> None:
    go = root / "go"
    code = (
        "import os, sys, time\n"
        "from engine import images\n"
        "open(sys.argv[2], 'w').close()\n"
        "while not os.path.exists(sys.argv[1]):\n"
        "    time.sleep(0.001)\n"
        "img = images.resolve('busybox')\n"
        "print(img.id, img.created, ','.join(img.layers))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(root / f"ready-{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for i in range(20)]
    try:
        deadline = time.monotonic() + 60
        while len(list(root.glob("ready-*"))) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 20, [err for _out, err in results if err]
    # One builder: every process got the very same record (its creation time included).
    assert len({out for out, _err in results}) == 1
    assert len(list(paths.layers_dir().iterdir())) == 1
    assert [p.name for p in (paths.images_dir() / "busybox").iterdir()] == ["latest.json"]
    assert not [p for p in paths.lib_dir().iterdir() if p.name.startswith(".staging")]


# --- whiteouts and opaque dirs, read by the kernel's overlayfs ------------------------------


@pytest.mark.parametrize("fmt", ["docker-save", "oci"])
def test_import_whiteouts_and_overlay(root: Path, fmt: str) -> None:
    base, top = base_layer(), top_layer()
    build = docker_save if fmt == "docker-save" else oci_layout
    (img,) = images.import_archive(build(root / "web.tar", [base, top]))
    assert img.ref == "lab/web:1.0"
    assert img.config == CONFIG
    assert img.layers == [sha(base), sha(gzip.decompress(top))]
    low, high = img.layer_paths()

    # In the layer dirs: the overlay on-disk format, not the tar's .wh. names.
    wh = os.lstat(high / "etc/gone.txt")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert os.getxattr(high / "data", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE((high / "data").stat().st_mode) == 0o775
    assert sorted(os.listdir(high / "data")) == ["new.txt"]
    assert not list(high.rglob(".wh.*"))
    # Ownership, setuid bits and special files kept in the lower layer.
    tool = os.lstat(low / "home/user/tool")
    assert (tool.st_uid, tool.st_gid, stat.S_IMODE(tool.st_mode)) == (1000, 1001, 0o4750)
    null = os.lstat(low / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(low / "run/fifo").st_mode)

    # What a container sees: mount them as lowerdirs, top first.
    ovl = root / "ovl"
    merged, upper, work = ovl / "merged", ovl / "upper", ovl / "work"
    for d in (merged, upper, work):
        d.mkdir(parents=True)
    lower = ":".join(str(p) for p in reversed(img.layer_paths()))
    syscalls.mount("overlay", str(merged), "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
    try:
        assert (merged / "etc/keep.txt").read_text() == "kept\n"
        assert not os.path.lexists(merged / "etc/gone.txt")
        assert sorted(os.listdir(merged / "etc")) == ["keep.txt"]
        assert sorted(os.listdir(merged / "data")) == ["new.txt"]  # old.txt and sub/ hidden
        assert not os.path.lexists(merged / "data/sub/deep.txt")
        assert os.lstat(merged / "home/user/tool").st_uid == 1000
        # Writes go to upper; the layer dirs stay as imported.
        (merged / "etc/keep.txt").write_text("changed\n")
        assert (low / "etc/keep.txt").read_text() == "kept\n"
    finally:
        syscalls.umount2(str(merged))
    assert (upper / "etc/keep.txt").read_text() == "changed\n"


def test_failed_import_leaves_the_store_unchanged(root: Path, busybox_binary: str) -> None:
    images.resolve("busybox")
    images.import_archive(docker_save(root / "good.tar", [base_layer(), top_layer()]))
    before = lib_snapshot()

    # 1. Truncated in the middle of the archive.
    data = docker_save(root / "t.tar", [base_layer(), top_layer()], "lab/t:1").read_bytes()
    (root / "t.tar").write_bytes(data[: len(data) // 2])
    # 2. A first layer full of whiteouts that extracts fine, then a second layer that is garbage.
    wh_layer = make_tar([entry("a/.wh.x"), entry("b/.wh..wh..opq"), entry("c", b"c")])
    bad_gz = bytearray(gzip.compress(make_tar([entry("f", os.urandom(100_000))])))
    bad_gz[len(bad_gz) // 2] ^= 0xFF
    files = {f"{sha(wh_layer)}/layer.tar": wh_layer, "bad/layer.tar": bytes(bad_gz), "c.json": b"{}",
             "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["lab/bad:1"],
                                           "Layers": [f"{sha(wh_layer)}/layer.tar", "bad/layer.tar"]}]).encode()}
    write_outer(root / "second-bad.tar", files)
    # 3. A layer that tries to write outside itself after valid entries.
    escape = make_tar([entry("ok", b"fine"), entry("x/../../../escape", b"no")])
    for archive in (root / "t.tar", root / "second-bad.tar", docker_save(root / "esc.tar", [escape], "lab/e:1")):
        with pytest.raises(InvalidArgument, match="cannot import"):
            images.import_archive(archive)
        assert lib_snapshot() == before, archive.name
    assert not (root / "escape").exists()


def test_remove_refuses_while_in_use(root: Path, busybox_binary: str) -> None:
    base, top = base_layer(), top_layer()
    (web,) = images.import_archive(docker_save(root / "web.tar", [base, top]))
    (other,) = images.import_archive(docker_save(root / "other.tar", [base], "lab/other:2"))
    users = {web.id: ["abc123def4567890fedcba"]}

    def in_use(img: images.Image) -> list[str]:
        return users.get(img.id, [])

    with pytest.raises(Conflict, match=r"^image lab/web:1.0 is in use by container abc123def456\b"):
        images.remove("lab/web:1.0", in_use)
    assert images.resolve("lab/web:1.0") == web
    assert all(p.is_dir() for p in web.layer_paths())

    users.clear()
    images.remove("lab/web:1.0", in_use)
    assert [p.name for p in paths.layers_dir().iterdir()] == [sha(base)]  # shared base kept
    assert [i.ref for i in images.list_images()] == ["lab/other:2"]

    bb = images.resolve("busybox")
    with pytest.raises(Conflict, match="in use by containers aaaaaaaaaaaa, bbbbbbbbbbbb"):
        images.remove("busybox", lambda img: ["a" * 64, "b" * 64])
    images.remove("busybox", lambda img: [])
    images.remove(other.ref, lambda img: [])
    assert list(paths.layers_dir().iterdir()) == []
    assert list(paths.images_dir().iterdir()) == []
    assert not bb.layer_paths()[0].exists()
