"""Image tarballs (engine.images.import_archive): `docker save` and OCI layouts built from random
members (paths with .., absolute, huge or empty names, symlinks and hard links pointing out,
devices), random configs and manifests, then truncated or corrupted. Each is imported or refused
with InvalidArgument/NotFound and a message; a refused one leaves nothing in the store (no
layer, record or staging dir), and nothing is ever written outside it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine import images
from engine.errors import EngineError
from tests.fuzz.argv import examples

ESCAPE = "zzfz-escaped"
GZIP = b"\x1f\x8b"
MEMBER_NAMES = ["a", "etc/motd", "./b", "dir", "dir/f", f"../{ESCAPE}", f"/{ESCAPE}", f"a/../../{ESCAPE}", "",
                ".", "..", "x" * 300, "d/" * 60 + "f", ".wh.a", ".wh..wh..opq", "dir/.wh.f", "é", "a\nb", "a/"]
LINK_TARGETS = ["/etc/passwd", f"../../../{ESCAPE}", "a", "", "dir", f"/{ESCAPE}", "x" * 300, "."]
KINDS = [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
         tarfile.FIFOTYPE, tarfile.BLKTYPE, b"Z"]

member = st.tuples(st.sampled_from(MEMBER_NAMES), st.sampled_from(KINDS), st.sampled_from(LINK_TARGETS),
                   st.binary(max_size=64), st.sampled_from([0o644, 0o755, 0o4755, 0o000, 0o7777]))
junk_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.text(max_size=8)),
                         lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=8), i, max_size=3),
                         max_leaves=6)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tar(members: list[tuple], gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, link, data, mode in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode, ti.mtime = kind, link, mode, 1_700_000_000
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def outer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def diff_ids(layers: list[bytes]) -> list[str]:
    return ["sha256:" + sha(gzip.decompress(x) if x[:2] == GZIP else x) for x in layers]


@st.composite
def archive(draw) -> bytes:
    layers = [make_tar(draw(st.lists(member, max_size=5)), draw(st.booleans()))
              for _ in range(draw(st.integers(0, 2)))]
    cfg_obj: object = {"architecture": images._host_arch(), "os": "linux",
                       "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids(layers)}}
    if draw(st.integers(0, 4)) == 0:
        cfg_obj = draw(junk_json)
    elif draw(st.integers(0, 4)) == 0:
        cfg_obj["config"] = draw(junk_json)
    cfg = json.dumps(cfg_obj).encode()
    if draw(st.booleans()):  # docker save
        files = {f"{sha(x)}/layer.tar": x for x in layers}
        files[f"{sha(cfg)}.json"] = cfg
        manifest: object = [{"Config": f"{sha(cfg)}.json", "RepoTags": ["zzfz/img:1"], "Layers": list(files)[:-1]}]
        if draw(st.integers(0, 4)) == 0:
            manifest = draw(junk_json)
        files["manifest.json"] = json.dumps(manifest).encode()
    else:  # OCI layout
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
        descs = []
        for x in layers:
            files[f"blobs/sha256/{sha(x)}"] = x
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if x[:2] == GZIP else ""),
                          "digest": f"sha256:{sha(x)}", "size": len(x)})
        files[f"blobs/sha256/{sha(cfg)}"] = cfg
        man_obj: object = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{sha(cfg)}", "size": len(cfg)}, "layers": descs}
        if draw(st.integers(0, 4)) == 0:
            man_obj = draw(junk_json)
        man = json.dumps(man_obj).encode()
        files[f"blobs/sha256/{sha(man)}"] = man
        index: object = {"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{sha(man)}",
            "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "zzfz/oci:2"}}]}
        if draw(st.integers(0, 4)) == 0:
            index = draw(junk_json)
        files["index.json"] = json.dumps(index).encode()
    for name in draw(st.lists(st.sampled_from(MEMBER_NAMES), max_size=2)):  # extra members of the outer tar
        files[name] = draw(st.binary(max_size=16))
    data = outer(files)
    cut = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if cut == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif cut == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    return data


def store_listing() -> set[str]:
    lib = images.paths.lib_dir()
    out = set()
    for dirpath, dirnames, filenames in os.walk(lib):
        for n in dirnames + filenames:
            if n != "images.lock":
                out.add(os.path.relpath(os.path.join(dirpath, n), lib))
    return out


def escaped(base: Path) -> list[str]:
    found = []
    for d in (base, base.parent, Path("/"), Path("/tmp"), Path("/var/tmp")):
        p = d / ESCAPE
        if os.path.lexists(p):
            found.append(str(p))
    return found


def test_random_archives_import_or_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path / "state"))
    images.paths.lib_dir().mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    results = {"imported": 0, "refused": 0}

    @settings(max_examples=examples(400))
    @given(archive(), st.sampled_from([None, "zzfz/ref:1", "zzfz/ref"]))
    def one(data: bytes, ref: str | None) -> None:
        before = store_listing()
        tarball = work / "image.tar"
        tarball.write_bytes(data)
        try:
            got = images.import_archive(tarball, ref)
        except EngineError as e:
            assert str(e).startswith(f"cannot import {tarball}"), e
            assert store_listing() == before, "a refused import left " + repr(store_listing() - before)
            results["refused"] += 1
            event("refused: " + str(e).split(": ", 1)[1][:50])
        else:
            results["imported"] += 1
            for img in got:
                images.remove(f"{img.name}:{img.tag}", lambda _img: [])
            # the store's own top directories stay (empty), as after any import and rm
            assert store_listing() - before <= {"images", "layers"}, store_listing() - before
        assert not escaped(work), escaped(work)
        assert not any(n.startswith(".staging-") for n in os.listdir(images.paths.lib_dir()))

    one()
    print("image archives:", results)
    assert results["imported"] and results["refused"], results
