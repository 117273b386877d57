"""Pull's pure parts: docker's reference rules, --platform, and skopeo's errors named by cause."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument, NotFound
from engine.images import reference, skopeo
from engine.images.pull import allowed

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "remote", "local"), [
    ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("alpine:3.20", "docker.io/library/alpine:3.20", "alpine:3.20"),
    ("user/img", "docker.io/user/img:latest", "user/img:latest"),
    ("docker.io/library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("index.docker.io/user/img:1", "docker.io/user/img:1", "user/img:1"),
    ("127.0.0.1:5000/lab/app:1.0", "127.0.0.1:5000/lab/app:1.0", "127.0.0.1:5000/lab/app:1.0"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("quay.io/org/a/b", "quay.io/org/a/b:latest", "quay.io/org/a/b:latest"),
    (f"alpine@{D}", f"docker.io/library/alpine@{D}", f"alpine@{D}"),
    (f"alpine:3@{D}", f"docker.io/library/alpine@{D}", f"alpine@{D}"),  # docker: the digest wins
])
def test_references_resolve_as_docker_does(text, remote, local):
    ref = reference.parse(text)
    assert (ref.remote(), ref.local) == (remote, local)


@pytest.mark.parametrize("text", ["", "Alpine", "a/../b", "a//b", "x@sha256:12", "x@md5:" + "0" * 32, "x:-bad",
                                  "bad_host:x/y"])
def test_bad_references_are_refused(text):
    with pytest.raises(InvalidArgument):
        reference.parse(text)


def test_platforms():
    assert str(reference.parse_platform("linux/arm64/v8")) == "linux/arm64/v8"
    assert str(reference.parse_platform("linux/x86_64")) == "linux/amd64"
    arm = reference.parse_platform("linux/arm64")
    assert arm.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert reference.parse_platform("linux/arm64/v8").matches({"os": "linux", "architecture": "arm64"})
    assert not reference.parse_platform("linux/arm/v6").matches({"os": "linux", "architecture": "arm", "variant": "v7"})
    for bad in ("windows/amd64", "amd64", "linux/", "a/b/c/d"):
        with pytest.raises(InvalidArgument):
            reference.parse_platform(bad)


def fatal(msg: str) -> str:
    return f'time="2026-01-01T00:00:00Z" level=fatal msg="{msg}"\n'


@pytest.mark.parametrize(("stderr", "cause", "kind"), [
    (fatal('Error parsing image name \\"docker://r/x:1\\": reading manifest 1 in r/x: manifest unknown: manifest '
           'unknown'), "unknown image or tag", NotFound),
    (fatal("reading manifest latest in docker.io/library/nope: requested access to the resource is denied"),
     "auth required", None),
    (fatal("initializing source docker://r/x:1: unable to retrieve auth token: invalid username/password: "
           "unauthorized: authentication required"), "auth required", None),
    (fatal('pinging container registry r: Get \\"https://r/v2/\\": dial tcp: lookup r: no such host'),
     "no network", None),
    (fatal("pinging container registry 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"),
     "no network", None),
    (fatal("writing blob: happened during read: Digest did not match, expected sha256:aa, got sha256:bb"),
     "digest mismatch", None),
    (fatal("writing blob: storing blob to file: write /var/lib/labtui/x: no space left on device"), "disk full", None),
    (fatal("choosing an image from manifest list: unsupported manifest type"), "unsupported media type", None),
    (fatal('pinging container registry r: Get \\"https://r/v2/\\": http: server gave HTTP response to HTTPS client'),
     "--tls-verify=false", None),
])
def test_skopeo_errors_name_their_cause(stderr, cause, kind):
    err = skopeo.classify(stderr, "r/x:1", "r")
    assert cause in str(err) and err.exit_code == 125
    assert "level=fatal" not in str(err) and "Error parsing image name" not in str(err)
    if kind is not None:
        assert isinstance(err, kind)


def test_registry_allow_list(monkeypatch):
    monkeypatch.setenv("LABTUI_REGISTRIES", "127.0.0.1,localhost")
    assert allowed("127.0.0.1:5000") and allowed("localhost") and not allowed("docker.io")
    monkeypatch.delenv("LABTUI_REGISTRIES")
    assert allowed("docker.io")
