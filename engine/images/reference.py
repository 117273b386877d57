"""What `labtui pull NAME` means: docker's reference rules (distribution/reference/normalize.go).

    alpine                      -> docker.io/library/alpine:latest   (stored as alpine:latest)
    user/img                    -> docker.io/user/img:latest         (stored as user/img:latest)
    127.0.0.1:5000/lab/app:1.0  -> 127.0.0.1:5000/lab/app:1.0        (stored under that name)
    alpine@sha256:<hex>         -> docker.io/library/alpine@sha256:<hex> (stored as alpine@sha256:<hex>)

The first component names a registry only when it has a dot or a port or is `localhost`, so a
short name never goes to a search list (registries.conf's unqualified-search-registries): labtui
always hands skopeo a fully qualified reference, and Docker Hub is the one default, as in docker.
"""

from __future__ import annotations

from engine.errors import InvalidArgument
from engine.images.record import DIGEST, _host_arch, _is_domain, _short_name, _split_ref
from engine.record import dataclass

DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class Reference:
    domain: str  # the registry: docker.io, 127.0.0.1:5000, quay.io
    path: str  # the repository in it: library/alpine, lab/app
    tag: str | None  # None when pulled by digest
    digest: str | None  # "sha256:<hex>"

    @property
    def repo(self) -> str:
        return f"{self.domain}/{self.path}"

    def remote(self) -> str:
        """The full reference (what docker prints last, what skopeo gets after docker://)."""
        return f"{self.repo}@{self.digest}" if self.digest else f"{self.repo}:{self.tag}"

    def at(self, digest: str) -> str:
        return f"{self.repo}@{digest}"

    @property
    def store_name(self) -> str:
        """The name in the image store and `labtui images`: Docker Hub's prefix left off."""
        return _short_name(self.repo)

    @property
    def store_tag(self) -> str:
        return self.digest or self.tag or "latest"

    @property
    def local(self) -> str:
        """What `labtui run` resolves: alpine:latest, lab/app@sha256:..."""
        return f"{self.store_name}@{self.digest}" if self.digest else f"{self.store_name}:{self.tag}"


def parse(text: str) -> Reference:
    """NAME[:TAG|@DIGEST] -> a fully qualified Reference; InvalidArgument names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("an image reference is required, e.g. alpine or 127.0.0.1:5000/lab/app:1.0")
    base, at, digest = text.partition("@")
    if at and not DIGEST.fullmatch(digest):
        raise InvalidArgument(f"invalid digest {digest!r} in {text!r}: expected sha256: and 64 hex digits")
    name, tag = _split_ref(base)  # validates the name's components, the registry and the tag
    first, _, rest = name.partition("/")
    if rest and _is_domain(first):
        domain, path = first, rest
        if domain == "index.docker.io":
            domain = DOCKER_HUB
    else:
        domain, path = DOCKER_HUB, name
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"  # Docker Hub's official images
    return Reference(domain, path, None if at else (tag or "latest"), digest if at else None)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, plat: dict) -> bool:
        """Does an index entry's platform object name this platform? (arm64's v8 is its default)"""
        if plat.get("os") != self.os or plat.get("architecture") != self.architecture:
            return False
        theirs = str(plat.get("variant") or "")
        if not self.variant:
            return True
        norm = {"arm64": {"": "v8"}}.get(self.architecture, {})
        return norm.get(theirs, theirs) == norm.get(self.variant, self.variant)


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "i386": "386"}


def parse_platform(text: str | None) -> Platform:
    """docker's --platform: os/arch[/variant]; None is this host's (linux/<uname -m as Go names it>)."""
    if text is None or text == "":
        return Platform("linux", _host_arch())
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid --platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
    os_, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    if os_ != "linux":
        raise InvalidArgument(f"invalid --platform {text!r}: labtui runs Linux containers (linux/ARCH)")
    return Platform(os_, arch, parts[2] if len(parts) == 3 else "")
