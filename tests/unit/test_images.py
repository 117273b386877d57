"""The image store without root: references, archive parsing, refusals, path-escape safety.

Every archive here is built by the test itself with tarfile, so each case says exactly what is in it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from engine import images
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound

MTIME = 1_700_000_000


# --- archive builders ---------------------------------------------------------------------


def entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "",
          mode: int | None = None, uid: int = 0, gid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.uid, ti.gid, ti.mtime = kind, link, uid, gid, MTIME
    ti.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uncompressed(layer: bytes) -> bytes:
    return gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer


def write_outer(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), MTIME
            tf.addfile(ti, io.BytesIO(data))
    return path


def image_config(config: dict | None, layers: list[bytes], diff_ids: bool = True) -> bytes:
    cfg: dict = {"architecture": images._host_arch(), "os": "linux", "created": "2024-01-02T03:04:05Z",
                 "config": config or {}}
    if diff_ids:
        cfg["rootfs"] = {"type": "layers", "diff_ids": [f"sha256:{sha(uncompressed(x))}" for x in layers]}
    return json.dumps(cfg).encode()


def docker_save(path: Path, layers: list[bytes], config: dict | None = None,
                repo_tags: list[str] | None = None, diff_ids: bool = True) -> Path:
    """A `docker save` tarball: <id>/layer.tar per layer, <config-sha>.json, manifest.json."""
    files: dict[str, bytes] = {}
    names = []
    for layer in layers:
        name = f"{sha(layer)}/layer.tar"
        files[name] = layer
        names.append(name)
    cfg = image_config(config, layers, diff_ids)
    files[f"{sha(cfg)}.json"] = cfg
    tags = ["lab/app:1.0"] if repo_tags is None else repo_tags
    files["manifest.json"] = json.dumps(
        [{"Config": f"{sha(cfg)}.json", "RepoTags": tags or None, "Layers": names}]).encode()
    return write_outer(path, files)


def oci_layout(path: Path, layers: list[bytes], config: dict | None = None, ref_name: str | None = "lab/oci:2",
               layer_type: str | None = None, nested: bool = False) -> Path:
    """An OCI image layout tarball: oci-layout, index.json -> manifest -> config + layers."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    descs = []
    for layer in layers:
        files[f"blobs/sha256/{sha(layer)}"] = layer
        media = layer_type or ("application/vnd.oci.image.layer.v1.tar+gzip" if layer[:2] == b"\x1f\x8b"
                               else "application/vnd.oci.image.layer.v1.tar")
        descs.append({"mediaType": media, "digest": f"sha256:{sha(layer)}", "size": len(layer)})
    cfg = image_config(config, layers)
    files[f"blobs/sha256/{sha(cfg)}"] = cfg
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{sha(cfg)}",
                   "size": len(cfg)},
        "layers": descs,
    }).encode()
    files[f"blobs/sha256/{sha(manifest)}"] = manifest
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{sha(manifest)}",
           "size": len(manifest)}
    if nested:
        # A multi-platform index: another arch first (its blob is absent: it must not be read).
        other = {"mediaType": top["mediaType"], "digest": "sha256:" + "0" * 64, "size": 1,
                 "platform": {"os": "linux", "architecture": "s390x-other"}}
        mine = dict(top, platform={"os": "linux", "architecture": images._host_arch()})
        inner = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [other, mine]}).encode()
        files[f"blobs/sha256/{sha(inner)}"] = inner
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{sha(inner)}",
               "size": len(inner)}
    if ref_name:
        top["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    return write_outer(path, files)


def base_layer(gz: bool = False) -> bytes:
    return make_tar([
        entry("etc", kind=tarfile.DIRTYPE),
        entry("etc/motd", b"hello\n", mode=0o640),
        entry("etc/mtab", kind=tarfile.SYMTYPE, link="/proc/self/mounts"),
        entry("etc/motd2", kind=tarfile.LNKTYPE, link="etc/motd"),
        entry("srv", kind=tarfile.DIRTYPE, mode=0o750),
        entry("srv/data.bin", b"x" * 1000),
    ], gz)


def top_layer(gz: bool = True) -> bytes:
    return make_tar([entry("srv/new.txt", b"new\n"), entry("./usr/bin/app", b"#!/bin/sh\n", mode=0o755)], gz)


CONFIG = {"Env": ["PATH=/usr/bin:/bin", "FOO=bar"], "Cmd": ["--serve"], "Entrypoint": ["/usr/bin/app"],
          "WorkingDir": "/srv", "User": "1000:1000"}


def lib_snapshot() -> list[tuple[str, str, int]]:
    """Everything under lib: relative path, kind, size. Equal snapshots = nothing left behind."""
    lib = images.paths.lib_dir()
    out = []
    if not lib.exists():
        return out
    for dirpath, dirs, files in os.walk(lib):
        for n in dirs + files:
            p = Path(dirpath, n)
            st = p.lstat()
            kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
            out.append((str(p.relative_to(lib)), kind, st.st_size if kind == "f" else 0))
    return sorted(out)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path / "state"))
    return tmp_path


# --- references ---------------------------------------------------------------------------


@pytest.mark.parametrize("ref, expected", [
    ("busybox", ("busybox", "latest")),
    ("busybox:1.36", ("busybox", "1.36")),
    ("lab/web:v1_2-rc.3", ("lab/web", "v1_2-rc.3")),
    ("docker.io/library/alpine:3.19", ("alpine", "3.19")),
    ("docker.io/lab/web", ("lab/web", "latest")),
    ("ghcr.io/a-b/c.d_e", ("ghcr.io/a-b/c.d_e", "latest")),
    # a registry with a port, and a digest where the tag would be (images pulled from a registry)
    ("localhost:5000/app", ("localhost:5000/app", "latest")),
    ("127.0.0.1:5000/lab/app:1.0", ("127.0.0.1:5000/lab/app", "1.0")),
    ("x@sha256:" + "0" * 64, ("x", "sha256:" + "0" * 64)),
])
def test_parse_ref(ref: str, expected: tuple[str, str]) -> None:
    assert images.parse_ref(ref) == expected


@pytest.mark.parametrize("ref", [
    "", "Busybox", "bad name", "../etc", "a/../b", "a//b", "/abs", "a/", ".hidden", "x:", ":tag",
    "x:.tag", "x:bad/tag", "x@sha256:" + "0" * 63, "x@md5:" + "0" * 32, "-bad:5000/app", "h:5x/app",
    "a\0b", "x:" + "t" * 129,
])
def test_parse_ref_refuses(ref: str) -> None:
    with pytest.raises(InvalidArgument):
        images.parse_ref(ref)


def test_resolve_unknown_is_not_found(root: Path) -> None:
    with pytest.raises(NotFound, match="image 'nope' not found"):
        images.resolve("nope")
    with pytest.raises(NotFound):
        images.remove("nope:1", lambda img: [])


# --- importing ----------------------------------------------------------------------------


def test_import_docker_save(root: Path) -> None:
    base, top = base_layer(), top_layer(gz=True)
    archive = docker_save(root / "app.tar", [base, top], CONFIG)
    (img,) = images.import_archive(archive)

    assert img.ref == "lab/app:1.0"
    assert img.layers == [sha(base), sha(gzip.decompress(top))]  # id = sha256 of the uncompressed tar
    cfg_blob = image_config(CONFIG, [base, top])
    assert img.id == sha(cfg_blob)
    assert img.config == CONFIG
    assert img.created == "2024-01-02T03:04:05Z"
    assert images.image_size(img) == 6 + 1000 + 4 + 10
    # The record on disk, and resolve/list read it back the same.
    record = images.paths.images_dir() / "lab" / "app" / "1.0.json"
    assert json.loads(record.read_text()) == img.to_json()
    assert images.resolve("lab/app:1.0") == img
    assert images.list_images() == [img]

    low, high = img.layer_paths()
    assert low == images.paths.layers_dir() / sha(base)
    assert (low / "etc/motd").read_bytes() == b"hello\n"
    assert stat.S_IMODE((low / "etc/motd").stat().st_mode) == 0o640
    assert stat.S_IMODE((low / "srv").stat().st_mode) == 0o750
    assert (low / "srv").stat().st_mtime == MTIME  # set after its children were written
    assert os.readlink(low / "etc/mtab") == "/proc/self/mounts"
    assert (low / "etc/motd2").stat().st_ino == (low / "etc/motd").stat().st_ino
    assert (high / "srv/new.txt").read_bytes() == b"new\n"
    assert not (high / "etc").exists()  # each layer holds only its own entries
    assert os.access(high / "usr/bin/app", os.X_OK)
    assert not [p for p in images.paths.lib_dir().iterdir() if p.name.startswith(".staging")]


def test_import_multiple_tags_and_dedupe(root: Path) -> None:
    base = base_layer()
    a = docker_save(root / "a.tar", [base], {"Cmd": ["sh"]}, repo_tags=["one:1", "two:2"])
    imgs = images.import_archive(a)
    assert sorted(i.ref for i in imgs) == ["one:1", "two:2"]
    assert len({i.id for i in imgs}) == 1
    # The same layer gzip'd in an OCI layout is the same layer: stored once.
    b = oci_layout(root / "b.tar", [gzip.compress(base)], {"Cmd": ["sh"]}, ref_name="three:3")
    (three,) = images.import_archive(b)
    assert three.layers == imgs[0].layers
    assert [p.name for p in images.paths.layers_dir().iterdir()] == [sha(base)]


def test_ref_overrides_name(root: Path) -> None:
    archive = docker_save(root / "a.tar", [base_layer()], {})
    assert [i.ref for i in images.import_archive(archive, "mine")] == ["mine:1.0"]
    assert [i.ref for i in images.import_archive(archive, "mine:9")] == ["mine:9"]


def test_unnamed_archive_needs_a_name(root: Path) -> None:
    archive = docker_save(root / "a.tar", [base_layer()], {}, repo_tags=[])
    with pytest.raises(InvalidArgument, match="does not name its image"):
        images.import_archive(archive)
    assert not (images.paths.layers_dir().exists() and any(images.paths.layers_dir().iterdir()))
    (img,) = images.import_archive(archive, "named")
    assert img.ref == "named:latest"


def test_import_oci_layout(root: Path) -> None:
    base, top = base_layer(gz=True), top_layer(gz=True)
    (img,) = images.import_archive(oci_layout(root / "oci.tar", [base, top], CONFIG))
    assert img.ref == "lab/oci:2"
    assert img.layers == [sha(gzip.decompress(base)), sha(gzip.decompress(top))]
    assert img.config == CONFIG
    assert (img.layer_paths()[1] / "srv/new.txt").read_bytes() == b"new\n"


def test_oci_nested_index_picks_this_platform(root: Path) -> None:
    (img,) = images.import_archive(oci_layout(root / "oci.tar", [base_layer()], {}, nested=True))
    assert img.ref == "lab/oci:2"


def test_oci_bare_ref_name_is_a_tag(root: Path) -> None:
    archive = oci_layout(root / "oci.tar", [base_layer()], {}, ref_name="3.1")
    with pytest.raises(InvalidArgument, match="does not name its image"):
        images.import_archive(archive)
    assert [i.ref for i in images.import_archive(archive, "lab/x")] == ["lab/x:3.1"]


def test_remove_deletes_unshared_layers(root: Path) -> None:
    base = base_layer()
    images.import_archive(docker_save(root / "a.tar", [base, top_layer()], {}, repo_tags=["a:1"]))
    images.import_archive(docker_save(root / "b.tar", [base], {}, repo_tags=["b:1"]))
    with pytest.raises(Conflict, match=r"image a:1 is in use by container 0123456789ab\b"):
        images.remove("a:1", lambda img: ["0123456789abcdef"])
    assert images.resolve("a:1")
    images.remove("a:1", lambda img: [])
    assert [p.name for p in images.paths.layers_dir().iterdir()] == [sha(base)]
    assert not (images.paths.images_dir() / "a").exists()
    with pytest.raises(NotFound):
        images.resolve("a:1")


# --- refusals: corrupt input leaves nothing behind -----------------------------------------


def _flip_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:]


def _case_random(p: Path) -> Path:
    p.write_bytes(os.urandom(5000))
    return p


def _case_empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _case_no_manifest(p: Path) -> Path:
    return write_outer(p, {"hello.txt": b"hi"})


def _case_manifest_not_json(p: Path) -> Path:
    return write_outer(p, {"manifest.json": b"[{not json"})


def _case_layer_missing(p: Path) -> Path:
    cfg = image_config({}, [])
    return write_outer(p, {"c.json": cfg, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["nope/layer.tar"]}]).encode()})


def _case_truncated_outer(p: Path) -> Path:
    docker_save(p, [base_layer(), top_layer(gz=False)], {})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    return p


def _case_corrupt_gzip_layer(p: Path) -> Path:
    layer = gzip.compress(make_tar([entry("big", os.urandom(200_000))]))
    return docker_save(p, [base_layer(), _flip_middle(layer)], {}, diff_ids=False)


def _case_layer_cut_at_member_boundary(p: Path) -> Path:
    layer = make_tar([entry("a", b"a" * 512), entry("b", b"b" * 512)])
    return docker_save(p, [layer[: 512 * 2]], {}, diff_ids=False)  # header+data of "a", no end marker


def _case_diff_id_mismatch(p: Path) -> Path:
    docker_save(p, [base_layer()], {})
    good = base_layer()
    bad = good.replace(b"hello\n", b"HELLO\n")
    with tarfile.open(p) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    files = {k: (bad if v == good else v) for k, v in files.items()}
    return write_outer(p, files)


def _case_second_layer_not_tar(p: Path) -> Path:
    return docker_save(p, [base_layer(), b"this is not a tar file" * 40], {}, diff_ids=False)


def _case_zstd_layer(p: Path) -> Path:
    return oci_layout(p, [base_layer()], {}, layer_type="application/vnd.oci.image.layer.v1.tar+zstd")


def _case_oci_blob_digest_mismatch(p: Path) -> Path:
    oci_layout(p, [base_layer(gz=True)], {})
    with tarfile.open(p) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    for k, v in files.items():
        if v[:2] == b"\x1f\x8b":
            files[k] = gzip.compress(make_tar([entry("evil", b"swapped")]))
    return write_outer(p, files)


def _case_oci_without_layout(p: Path) -> Path:
    return write_outer(p, {"index.json": b'{"manifests": []}'})


@pytest.mark.parametrize("build, reason", [
    (_case_random, "not a tar"),
    (_case_empty, "not a tar"),
    (_case_no_manifest, "neither"),
    (_case_manifest_not_json, "not valid JSON"),
    (_case_layer_missing, "missing"),
    (_case_truncated_outer, ""),
    (_case_corrupt_gzip_layer, "corrupt"),
    (_case_layer_cut_at_member_boundary, "truncated"),
    (_case_diff_id_mismatch, "diff_id"),
    (_case_second_layer_not_tar, "not a tar"),
    (_case_zstd_layer, "zstd"),
    (_case_oci_blob_digest_mismatch, "digest"),
    (_case_oci_without_layout, "oci-layout"),
], ids=lambda v: v.__name__[6:] if callable(v) else None)
def test_corrupt_input_is_refused_and_leaves_nothing(root: Path, build, reason: str) -> None:
    images.import_archive(docker_save(root / "good.tar", [base_layer()], {}))  # a store with content
    before = lib_snapshot()
    archive = build(root / "bad.tar")
    with pytest.raises(InvalidArgument, match=f"cannot import {re.escape(str(archive))}: .*{reason}"):
        images.import_archive(archive)
    assert lib_snapshot() == before


def test_missing_file_is_not_found(root: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        images.import_archive(root / "nope.tar")


# --- refusals: a layer may not write outside itself -----------------------------------------


def escape_cases(outside: Path) -> dict[str, list]:
    rel_out = os.path.relpath(outside, "/")
    return {
        "dotdot": [entry(f"../../../../../../../../{rel_out}/pwned", b"x")],
        "nested-dotdot": [entry("a", kind=tarfile.DIRTYPE), entry(f"a/../../../../../../../{rel_out}/pwned", b"x")],
        "absolute": [entry(f"/{rel_out}/pwned", b"x")],
        "through-symlink": [entry("link", kind=tarfile.SYMTYPE, link=str(outside)), entry("link/pwned", b"x")],
        "hardlink-out": [entry("pwned", kind=tarfile.LNKTYPE, link=f"../../../../../../{rel_out}/target")],
        "hardlink-via-symlink": [entry("link", kind=tarfile.SYMTYPE, link=str(outside)),
                                 entry("pwned", kind=tarfile.LNKTYPE, link="link/target")],
        "dir-then-symlink": [entry("d", kind=tarfile.DIRTYPE), entry("d", kind=tarfile.SYMTYPE, link=str(outside)),
                             entry("d/pwned", b"x")],
    }


@pytest.mark.parametrize("case", list(escape_cases(Path("/x"))))
def test_path_escapes_are_refused(root: Path, case: str) -> None:
    outside = root / "outside"
    outside.mkdir()
    (outside / "target").write_text("host file")
    archive = docker_save(root / "evil.tar", [make_tar(escape_cases(outside)[case])], {})
    with pytest.raises(InvalidArgument, match="cannot import"):
        images.import_archive(archive)
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert (outside / "target").stat().st_nlink == 1
    assert lib_snapshot() == []


def test_symlinks_are_stored_not_followed(root: Path) -> None:
    outside = root / "outside"
    outside.mkdir()
    layer = make_tar([
        entry("abs", kind=tarfile.SYMTYPE, link=str(outside)),
        entry("rel", kind=tarfile.SYMTYPE, link="../../../../.."),
        entry("abs", b"replaces the link, does not write through it"),
    ])
    (img,) = images.import_archive(docker_save(root / "s.tar", [layer], {}))
    d = img.layer_paths()[0]
    assert os.readlink(d / "rel") == "../../../../.."
    assert (d / "abs").is_file() and not (d / "abs").is_symlink()
    assert list(outside.iterdir()) == []


# --- busybox prerequisites and the cost of resolve() ----------------------------------------


def test_static_elf_check(tmp_path: Path) -> None:
    dynamic = os.path.realpath(sys.executable)
    assert images._is_static_elf(dynamic) is False
    if os.path.exists("/bin/busybox"):
        assert images._is_static_elf("/bin/busybox") is True
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(EngineError, match="not an ELF"):
        images._is_static_elf(str(tmp_path / "script"))


def test_busybox_missing_or_dynamic(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.busybox, "BUSYBOX", str(root / "no-busybox"))
    with pytest.raises(EngineError, match="apt-get install busybox-static"):
        images.resolve("busybox")
    monkeypatch.setattr(images.busybox, "BUSYBOX", os.path.realpath(sys.executable))
    with pytest.raises(EngineError, match="dynamically linked.*apt-get install busybox-static"):
        images.ensure_busybox()
    assert lib_snapshot() == []  # nothing was started


def test_resolve_existing_image_is_one_json_read(root: Path) -> None:
    record = images.paths.images_dir() / "lab" / "fast" / "latest.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"name": "lab/fast", "tag": "latest", "id": "0" * 64, "layers": ["1" * 64],
                                  "config": {"Cmd": ["sh"]}, "created": "2024-01-01T00:00:00Z", "size": 3}))
    code = (
        "import sys, time\n"
        "from engine import images\n"
        "t = time.perf_counter(); img = images.resolve('lab/fast'); dt = time.perf_counter() - t\n"
        "heavy = [m for m in ('tarfile', 'gzip', 'hashlib', 'shutil', 'subprocess', 'tempfile', 'zlib')"
        " if m in sys.modules]\n"
        "print(img.ref, img.config['Cmd'], heavy, dt)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ)).stdout.split(" ", 3)
    assert out[:3] == ["lab/fast:latest", "['sh']", "[]"], out
    assert float(out[3]) < 0.05


def test_crashed_imports_are_swept(root: Path) -> None:
    """A staging dir left by a killed import is deleted by the next one; a live one is not."""
    import fcntl

    lib = images.paths.lib_dir()
    lib.mkdir(parents=True)
    dead, fresh, live = (lib / f".staging-{n}" for n in ("dead", "fresh", "live"))
    for d in (dead, fresh, live):
        (d / "layer-0").mkdir(parents=True)
    for d in (dead, live):
        os.utime(d, (0, 0))
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as an import in progress holds it
        images.import_archive(docker_save(root / "a.tar", [base_layer()], {}))
        assert not dead.exists()
        assert fresh.exists() and live.exists()
    finally:
        os.close(fd)


def test_directory_is_refused_with_a_hint(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="is a directory; pack it first"):
        images.import_archive(root)
