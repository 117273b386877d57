"""`labtui pull` and `run --pull` against a real registry on loopback (Debian's docker-registry).

The registry is started here on 127.0.0.1 and a free port, its storage in a temp dir, and stopped
after. The images are built here (the built-in busybox layer plus small layers made with tarfile,
as an OCI layout) and pushed with skopeo. The registry's access log tells which blobs a pull
fetched. No test reaches any other host (conftest sets LABTUI_REGISTRIES to loopback).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from engine.images.record import _host_arch
from tests.helpers import labtui, lib

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]

HOST_ARCH = _host_arch()
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"


def _ensure_packages() -> str | None:
    """docker-registry and skopeo from Debian; the reason they cannot be had, or None."""
    if shutil.which("skopeo") and os.path.exists("/usr/bin/docker-registry"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-registry", "skopeo"],
                       capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        return f"apt-get install docker-registry skopeo failed: {p.stderr.strip()[-300:]}"
    # The package's own service would listen on :5000 of every interface: never leave it running.
    for cmd in (["systemctl", "disable", "--now", "docker-registry.service"], ["service", "docker-registry", "stop"]):
        subprocess.run(cmd, capture_output=True, check=False)
    return None


class Registry:
    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.storage = root / "storage"
        self.log = root / "registry.log"
        cfg = root / "config.yml"
        cfg.write_text(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {self.storage}
http:
  addr: 127.0.0.1:{self.port}
""")
        self.logf = open(self.log, "wb")  # noqa: SIM115  (open while the registry runs)
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)], stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()

    def blob_gets(self, repo: str) -> list[str]:
        """The blobs of repo fetched so far (the access log's GET /v2/REPO/blobs/sha256:... lines)."""
        pat = re.compile(rf'"GET /v2/{re.escape(repo)}/blobs/(sha256:[0-9a-f]{{64}}) HTTP[^"]*" 200')
        return pat.findall(self.log.read_text(errors="replace"))

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def push(self, layout: Path, tag_in_layout: str, dest: str, *, all_: bool = False) -> None:
        argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false", *(["--all"] if all_ else []),
                f"oci:{layout}:{tag_in_layout}", f"docker://{self.host}/{dest}"]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    why = _ensure_packages()
    if why:
        pytest.skip(why)
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


# --- images built here ------------------------------------------------------------------------


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


_BUSYBOX: list[bytes] = []


def busybox_layer() -> bytes:
    """The built-in busybox image's layer, as a tar: a base layer that runs on this host."""
    if not _BUSYBOX:
        labtui("run", "--rm", "busybox", "true")
        img = json.loads((lib() / "images" / "busybox" / "latest.json").read_text())
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            tf.add(lib() / "layers" / img["layers"][0], arcname=".")
        _BUSYBOX.append(buf.getvalue())
    return _BUSYBOX[0]


class Layout:
    """An OCI image layout made by hand: blobs, manifests, an index of named entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.entries: list[dict] = []

    def blob(self, data: bytes) -> str:
        d = _sha(data)
        (self.root / "blobs" / "sha256" / d.split(":")[1]).write_bytes(data)
        return d

    def image(self, layers: list[bytes], config: dict, arch: str = HOST_ARCH,
              media: str = "application/vnd.oci.image.layer.v1.tar+gzip") -> dict:
        descs = []
        for raw in layers:
            gz = gzip.compress(raw, mtime=0)
            descs.append({"mediaType": media, "digest": self.blob(gz), "size": len(gz)})
        cfg = json.dumps({"architecture": arch, "os": "linux", "config": config,
                          "rootfs": {"type": "layers", "diff_ids": [_sha(x) for x in layers]}}).encode()
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": self.blob(cfg), "size": len(cfg)},
                        "layers": descs}).encode()
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.blob(m), "size": len(m),
                "platform": {"os": "linux", "architecture": arch}, "layers": [d["digest"] for d in descs]}

    def index(self, manifests: list[dict]) -> dict:
        idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": [{k: v for k, v in m.items() if k != "layers"} for m in manifests]}).encode()
        return {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": self.blob(idx), "size": len(idx)}

    def name(self, desc: dict, ref: str) -> None:
        entry = {k: v for k, v in desc.items() if k not in ("layers", "platform")}
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        self.entries.append(entry)
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.entries}))


def store_state() -> dict:
    """What the image store holds: records, layer dirs, staging dirs, cached blobs."""
    lb = lib()
    return {
        "records": sorted(str(p.relative_to(lb / "images")) for p in (lb / "images").rglob("*.json")),
        "layers": sorted(os.listdir(lb / "layers")),
        "staging": sorted(n for n in os.listdir(lb) if n.startswith(".staging-")),
        "blobs": sorted(os.listdir(lb / "blobs" / "sha256")) if (lb / "blobs" / "sha256").is_dir() else [],
    }


CONFIG = {"Env": ["PATH=/bin:/usr/bin"], "Cmd": ["cat", "/hello.txt"]}


@pytest.fixture(scope="module")
def app(registry, tmp_path_factory):
    """lab/app:1.0 (busybox + hello.txt) and lab/app:2.0 (the same base, another top layer)."""
    lay = Layout(tmp_path_factory.mktemp("layout") / "app")
    one = lay.image([busybox_layer(), layer({"hello.txt": b"hello from the registry\n"})], CONFIG)
    two = lay.image([busybox_layer(), layer({"hello.txt": b"version two\n"})], CONFIG)
    lay.name(one, "1.0")
    lay.name(two, "2.0")
    registry.push(lay.root, "1.0", "lab/app:1.0")
    registry.push(lay.root, "2.0", "lab/app:2.0")
    return {"one": one, "two": two, "ref": f"{registry.host}/lab/app"}


# --- the tests --------------------------------------------------------------------------------


def test_pull_by_tag_runs_and_is_recorded(registry, app):
    ref = f"{app['ref']}:1.0"
    p = labtui("pull", ref, timeout=120)
    assert "Status: Downloaded newer image for " + ref in p.stdout
    assert p.stdout.strip().splitlines()[-1] == ref
    for d in app["one"]["layers"]:
        assert f"{d[7:19]}: Pull complete" in p.stdout
    assert sorted(registry.blob_gets("lab/app")) == sorted(set(registry.blob_gets("lab/app")))  # each once
    assert set(app["one"]["layers"]) <= set(registry.blob_gets("lab/app"))
    rec = json.loads((lib() / "images" / registry.host / "lab/app/1.0.json").read_text())
    assert rec["pulled"]["source"] == ref and rec["pulled"]["platform"] == f"linux/{HOST_ARCH}"
    assert len(rec["layers"]) == 2
    # the image runs: its Cmd reads the file of its second layer, on the busybox of its first
    assert labtui("run", "--rm", ref).stdout == "hello from the registry\n"
    # the pull is on the event stream, its skopeo copy and layer extractions on the step stream
    evs = [json.loads(x) for x in labtui("events", "--format", "json").stdout.splitlines()]
    assert any(e["type"] == "pull" and e["image"] == ref and e["status"] == "downloaded" for e in evs)
    steps = [json.loads(x) for x in (lib() / "steps.jsonl").read_text().splitlines()]
    ops = [(s["op"], s["result"]) for s in steps if s["mechanism"] == "image" and ref in (s.get("target") or "")
           or s["op"] == "extract-layer" and s.get("value") in rec["layers"]]
    assert ("pull", "ok") in ops and ops.count(("extract-layer", "ok")) >= 1
    shells = [s.get("shell") or "" for s in steps if s["op"] == "pull"]
    assert any(re.match(r"skopeo copy .*docker://\S+@sha256:", sh) for sh in shells), shells
    assert store_state()["staging"] == []


def test_repull_fetches_nothing_and_shared_layers_are_not_fetched_again(registry, app):
    ref1, ref2 = f"{app['ref']}:1.0", f"{app['ref']}:2.0"
    labtui("pull", ref1, timeout=120)
    before = registry.blob_gets("lab/app")
    p = labtui("pull", ref1, timeout=120)
    assert "Status: Image is up to date for " + ref1 in p.stdout
    assert registry.blob_gets("lab/app") == before  # not one blob fetched
    # 2.0 shares the busybox layer with 1.0: only its own layer and config are fetched
    p = labtui("pull", ref2, timeout=120)
    base, top = app["two"]["layers"]
    assert f"{base[7:19]}: Already exists" in p.stdout
    fetched = registry.blob_gets("lab/app")[len(before):]
    assert top in fetched and base not in fetched
    assert labtui("run", "--rm", ref2).stdout == "version two\n"


def test_pull_by_digest(registry, app):
    digest = app["one"]["digest"]
    ref = f"{app['ref']}@{digest}"
    p = labtui("pull", ref, timeout=120)
    assert f"Digest: {digest}" in p.stdout
    assert (lib() / "images" / registry.host / "lab/app" / f"{digest}.json").is_file()
    assert labtui("run", "--rm", ref).stdout == "hello from the registry\n"
    rows = labtui("images").stdout
    assert re.search(rf"{re.escape(app['ref'])}\s+<none>", rows)
    # a digest the registry does not have: unknown, exit 125, nothing written
    before = store_state()
    p = labtui("pull", f"{app['ref']}@sha256:{'0' * 64}", check=False, timeout=120)
    assert p.returncode == 125 and "unknown image or tag" in p.stderr
    assert store_state() == before


def test_multi_arch_index_picks_the_host_and_platform_picks_the_other(registry, tmp_path):
    lay = Layout(tmp_path / "multi")
    mine = lay.image([busybox_layer(), layer({"etc/arch": f"{HOST_ARCH}\n".encode()})], CONFIG, HOST_ARCH)
    other = lay.image([busybox_layer(), layer({"etc/arch": f"{OTHER_ARCH}\n".encode()})], CONFIG, OTHER_ARCH)
    lay.name(lay.index([other, mine]), "1.0")  # the host's is not the first entry
    registry.push(lay.root, "1.0", "lab/multi:1.0", all_=True)
    ref = f"{registry.host}/lab/multi:1.0"
    labtui("pull", ref, timeout=120)
    assert labtui("run", "--rm", ref, "cat", "/etc/arch").stdout == f"{HOST_ARCH}\n"
    assert other["layers"][1] not in registry.blob_gets("lab/multi")  # the other platform's layer: never fetched
    p = labtui("pull", "--platform", f"linux/{OTHER_ARCH}", ref, timeout=120)
    assert "Downloaded newer image" in p.stdout
    rec = json.loads((lib() / "images" / registry.host / "lab/multi/1.0.json").read_text())
    assert rec["pulled"]["platform"] == f"linux/{OTHER_ARCH}"
    # (the "other" image's base is this host's busybox, so it runs here all the same)
    assert labtui("run", "--rm", ref, "cat", "/etc/arch").stdout == f"{OTHER_ARCH}\n"
    # run --platform with the store holding the other platform's image pulls the one asked for
    p = labtui("run", "--rm", "--platform", f"linux/{HOST_ARCH}", ref, "cat", "/etc/arch", timeout=120)
    assert p.stdout == f"{HOST_ARCH}\n" and "Unable to find image" in p.stderr
    p = labtui("pull", "--platform", "linux/s390x", ref, check=False)
    assert p.returncode == 125 and "no image for linux/s390x" in p.stderr and OTHER_ARCH in p.stderr


def test_corrupted_blob_is_refused_and_nothing_is_left(registry, tmp_path):
    lay = Layout(tmp_path / "bad")
    img = lay.image([busybox_layer(), layer({"secret.txt": os.urandom(64 * 1024)})], CONFIG)
    lay.name(img, "1.0")
    registry.push(lay.root, "1.0", "lab/bad:1.0")
    blob = registry.blob_file(img["layers"][1])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit pattern changed, same size: only the digest can tell
    blob.write_bytes(bytes(data))
    before = store_state()
    p = labtui("pull", f"{registry.host}/lab/bad:1.0", check=False, timeout=120)
    assert p.returncode == 125, p
    assert "digest mismatch" in p.stderr and "Traceback" not in p.stderr
    after = store_state()
    assert after["records"] == before["records"] and after["layers"] == before["layers"]
    assert after["staging"] == []
    assert img["layers"][1][7:] not in after["blobs"]  # the bad blob did not reach the cache


def test_missing_tag_unknown_image_and_no_network(registry, app):
    before = store_state()
    p = labtui("pull", f"{app['ref']}:nope", check=False, timeout=120)
    assert p.returncode == 125 and "unknown image or tag" in p.stderr
    p = labtui("pull", f"{registry.host}/lab/nothing-here:1.0", check=False, timeout=120)
    assert p.returncode == 125 and "unknown image or tag" in p.stderr
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    p = labtui("pull", f"127.0.0.1:{closed}/lab/app:1.0", check=False, timeout=120)
    assert p.returncode == 125 and "no network" in p.stderr
    # Docker Hub is out of bounds in the tests: refused before anything is sent
    p = labtui("pull", "alpine", check=False)
    assert p.returncode == 125 and "docker.io/library/alpine:latest" in p.stderr and "LABTUI_REGISTRIES" in p.stderr
    assert store_state() == before


def test_run_pull_policies(registry, tmp_path):
    lay = Layout(tmp_path / "run")
    img = lay.image([busybox_layer(), layer({"hello.txt": b"pulled by run\n"})], CONFIG)
    lay.name(img, "1.0")
    registry.push(lay.root, "1.0", "lab/run:1.0")
    ref = f"{registry.host}/lab/run:1.0"
    p = labtui("run", "--rm", "--pull", "never", ref, check=False)
    assert p.returncode == 125 and "not found" in p.stderr and "--pull never" in p.stderr
    p = labtui("run", "--rm", ref, "echo", "hi", timeout=120)  # --pull missing, the default
    assert p.stdout == "hi\n"  # stdout is the container's; the pull's lines went to stderr
    assert f"Unable to find image '{ref}' locally" in p.stderr and "Downloaded newer image" in p.stderr
    gets = registry.blob_gets("lab/run")
    p = labtui("run", "--rm", ref, timeout=60)
    assert p.stdout == "pulled by run\n" and p.stderr == ""  # present: no pull at all
    p = labtui("create", "--pull", "always", ref, timeout=120)
    assert "Image is up to date" in p.stderr and registry.blob_gets("lab/run") == gets
    labtui("rm", p.stdout.strip())
    p = labtui("run", "--rm", "--pull", "sometimes", ref, check=False)
    assert p.returncode == 125 and "invalid --pull" in p.stderr


def test_unsupported_media_type_fetches_nothing(registry, tmp_path):
    lay = Layout(tmp_path / "zstd")
    img = lay.image([layer({"a": b"a"})], CONFIG, media="application/vnd.oci.image.layer.v1.tar+zstd")
    lay.name(img, "1.0")
    registry.push(lay.root, "1.0", "lab/zstd:1.0")
    before = store_state()
    p = labtui("pull", f"{registry.host}/lab/zstd:1.0", check=False, timeout=120)
    assert p.returncode == 125 and "unsupported media type" in p.stderr and "zstd" in p.stderr
    assert registry.blob_gets("lab/zstd") == [] and store_state() == before
