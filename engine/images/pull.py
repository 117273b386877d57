"""`labtui pull`, and `run`/`create --pull missing|always|never`: an image from a registry.

What happens, in order (docs/images.md, "Pulling images"):

 1. the reference is made fully qualified as docker does (reference.py): alpine is
    docker.io/library/alpine:latest;
 2. `skopeo inspect --raw` fetches the manifest the tag names; labtui hashes it (a digest the user
    wrote must match), and from an index (a multi-arch image) picks the manifest of the platform
    asked for (--platform, by default this host's), fetched and hashed the same way;
 3. every layer's media type is checked before anything is fetched; if the store already has this
    name with this digest and platform, and its layers, it is up to date and nothing more is fetched;
 4. `skopeo copy docker://REPO@DIGEST oci:<staging>:img --dest-shared-blob-dir lib/blobs`: skopeo
    fetches the blobs the cache lacks (a blob already there is not fetched again) and checks each
    against its digest; a terminal gets skopeo's progress bar per layer, a pipe plain lines;
 5. the importer reads that layout (layout.py): manifest, config and each layer checked against
    their digests again, each layer extracted (a step) unless its diff_id is already in layers/,
    then the record is committed under the store lock; a `pull` event goes on the event stream.

Any failure leaves the store as it was: the layout is in a staging dir, layers are extracted in
it and renamed into place only at the commit; the blob cache only ever holds verified blobs
(skopeo writes a temp file in the layout dir and renames it once its digest matched).
"""

from __future__ import annotations

import errno
import json

from engine.errors import EngineError, InvalidArgument, NotFound
from engine.images import reference, skopeo
from engine.images.archive import _LAYER_TYPES, _OCI_INDEX, _OCI_MANIFEST
from engine.images.record import Image, _Bad

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO

    from engine.steps import Recorder

POLICIES = ("missing", "always", "never")
_SCHEMA1 = {"application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws"}


def pull(text: str, *, platform: str | None = None, tls_verify: bool | None = None, authfile: str | None = None,
         out: IO[str] | None = None, rec: Recorder | None = None) -> Image:
    """Pull NAME[:TAG|@DIGEST] into the store; returns its record. out: where progress goes
    (None: nowhere). Errors are EngineErrors naming the cause; nothing half-written stays."""
    ref = reference.parse(text)
    plat = reference.parse_platform(platform)
    if not allowed(ref.domain):
        raise EngineError(f"cannot pull {ref.remote()}: {ref.domain} is not among the registries labtui may pull "
                          f"from here (LABTUI_REGISTRIES={_allowed_env()})")
    opts = skopeo.Options(tls_verify, authfile)
    say = _sayer(out)
    if ref.tag == "latest" and ":latest" not in text:
        say("Using default tag: latest")
    top = _fetch_manifest(ref, ref.remote(), ref.digest, opts)
    top_digest = _sha(top)
    manifest_raw, digest = _pick(ref, top, top_digest, plat, opts)
    layers = _check_manifest(ref, manifest_raw)
    current = _up_to_date(ref, top_digest, plat)
    if current is not None:
        say(f"Digest: {top_digest}")
        say(f"Status: Image is up to date for {ref.local}")
        say(ref.remote())
        _event(ref, top_digest, plat, "up to date")
        return current
    say(f"{ref.store_tag}: Pulling from {ref.path if ref.domain == reference.DOCKER_HUB else ref.repo}")
    img = _copy_and_import(ref, digest, top_digest, plat, platform is not None, layers, opts, out, say, rec)
    say(f"Digest: {top_digest}")
    say(f"Status: Downloaded newer image for {ref.local}")
    say(ref.remote())
    _event(ref, top_digest, plat, "downloaded")
    return img


def ensure(text: str, policy: str = "missing", platform: str | None = None, *, out: IO[str] | None = None,
           rec: Recorder | None = None) -> Image:
    """The image `run`/`create` use, by docker's --pull policy: missing (pull when not in the store,
    or there for another platform than --platform), always (pull first), never (the store only)."""
    from engine.images.busybox import resolve

    if policy not in POLICIES:
        raise InvalidArgument(f"invalid --pull {policy!r}: expected missing, always or never")
    plat = reference.parse_platform(platform) if platform else None
    if policy != "always":
        try:
            img = resolve(text, rec=rec)
        except NotFound:
            if policy == "never":
                raise NotFound(f"image '{text}' not found, and --pull never forbids pulling it") from None
            domain = reference.parse(text).domain
            if not allowed(domain):  # a test run, a closed lab: say what docker would, reach nobody
                raise NotFound(f"image '{text}' not found (and {domain} is not among the registries labtui may "
                               f"pull from here: LABTUI_REGISTRIES={_allowed_env()})") from None
        else:
            have = (img.pulled or {}).get("platform")
            if plat is None or have in (None, str(plat)) or policy == "never":
                return img
        if out is not None:
            local = reference.parse(text).local
            print(f"Unable to find image '{local}' locally", file=out, flush=True)
    return pull(text, platform=platform, out=out, rec=rec)

def _allowed_env() -> str | None:
    import os

    return os.environ.get("LABTUI_REGISTRIES")


def allowed(domain: str) -> bool:
    """LABTUI_REGISTRIES (comma-separated hosts, a port optional) limits which registries a pull
    may reach: the test suite sets it to loopback, so no test ever reaches another host. Unset:
    every registry, as docker."""
    env = _allowed_env()
    if env is None:
        return True
    names = {n.strip() for n in env.split(",") if n.strip()}
    host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
    return domain in names or host in names

# --------------------------------------------------------------------------------------------
# Steps of a pull


def _sayer(out: IO[str] | None) -> Callable[[str], None]:
    def say(line: str) -> None:
        if out is not None:
            out.write(line + "\n")
            out.flush()

    return say


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _fetch_manifest(ref: reference.Reference, remote: str, digest: str | None, opts: skopeo.Options) -> bytes:
    raw = skopeo.inspect_raw(remote, ref.domain, opts)
    if digest is not None and _sha(raw) != digest:
        raise EngineError(f"cannot pull {remote}: digest mismatch: the registry sent a manifest whose digest "
                          f"is {_sha(raw)}; nothing was stored")
    return raw


def _doc(ref: reference.Reference, raw: bytes) -> dict:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise EngineError(f"cannot pull {ref.remote()}: unsupported media type: the registry's manifest is not JSON")
    return doc


def _media(doc: dict) -> str | None:
    media = doc.get("mediaType")
    if media is None:  # OCI allows leaving it out: the fields tell
        media = ("application/vnd.oci.image.index.v1+json" if "manifests" in doc
                 else "application/vnd.oci.image.manifest.v1+json" if "layers" in doc else None)
    return media


def _pick(ref: reference.Reference, top: bytes, top_digest: str, plat: reference.Platform,
          opts: skopeo.Options) -> tuple[bytes, str]:
    """The image manifest to copy and its digest: the top one, or the platform's from an index."""
    doc = _doc(ref, top)
    if _media(doc) not in _OCI_INDEX:
        return top, top_digest
    options = []
    for d in doc.get("manifests") or []:
        if not isinstance(d, dict) or not isinstance(d.get("platform"), dict):
            continue
        if (d.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest":
            continue  # buildkit's provenance records, not images
        options.append(d)
        if plat.matches(d["platform"]):
            digest = str(d.get("digest", ""))
            if not reference.DIGEST.fullmatch(digest):
                raise EngineError(f"cannot pull {ref.remote()}: the index names {digest!r}, not a sha256 digest")
            return _fetch_manifest(ref, ref.at(digest), digest, opts), digest
    have = ", ".join(sorted({"/".join(str(d["platform"].get(k) or "") for k in ("os", "architecture", "variant"))
                             .rstrip("/") for d in options})) or "none"
    raise NotFound(f"cannot pull {ref.remote()}: no image for {plat} in its index (it has: {have}); "
                   "choose one with --platform")


def _check_manifest(ref: reference.Reference, raw: bytes) -> list[str]:
    """The layer digests of an image manifest, once every media type in it is one labtui reads."""
    doc = _doc(ref, raw)
    media = _media(doc)
    if media in _SCHEMA1:
        raise EngineError(f"cannot pull {ref.remote()}: unsupported media type {media} (Docker's schema 1, "
                          "retired in 2019; the image must be pushed again with a current client)")
    if media not in _OCI_MANIFEST:
        raise EngineError(f"cannot pull {ref.remote()}: unsupported media type {media!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise EngineError(f"cannot pull {ref.remote()}: the manifest has no list of layers")
    out = []
    for ld in layers:
        lmedia = ld.get("mediaType") if isinstance(ld, dict) else None
        if lmedia not in _LAYER_TYPES:
            hint = " (zstd layers are not supported)" if "zstd" in str(lmedia) else ""
            raise EngineError(f"cannot pull {ref.remote()}: unsupported media type {lmedia!r} for a layer{hint}")
        out.append(str(ld.get("digest", "")))
    return out


def _up_to_date(ref: reference.Reference, top_digest: str, plat: reference.Platform) -> Image | None:
    from engine import paths
    from engine.images.store import _image_file, _load

    try:
        img = _load(_image_file(ref.store_name, ref.store_tag))
    except (FileNotFoundError, NotADirectoryError):
        return None
    got = img.pulled or {}
    if got.get("digest") != top_digest or got.get("platform") != str(plat):
        return None
    if not all((paths.layers_dir() / h).is_dir() for h in img.layers):
        return None  # a layer was removed by hand: pull it again
    return img


def _copy_and_import(ref: reference.Reference, digest: str, top_digest: str, plat: reference.Platform,
                     explicit: bool, layers: list[str], opts: skopeo.Options, out: IO[str] | None,
                     say: Callable[[str], None], rec: Recorder | None) -> Image:
    from engine import paths
    from engine.images import layout
    from engine.images.store import _staging, _step

    blobs = paths.blobs_dir()
    (blobs / "sha256").mkdir(parents=True, exist_ok=True)
    cached = {d for d in layers if (blobs / "sha256" / d.partition(":")[2]).is_file()}
    for d in layers:
        say(f"{d.partition(':')[2][:12]}: {'Already exists' if d in cached else 'Pulling fs layer'}")
    tty = out if out is not None and _isatty(out) else None

    def relay(line: str) -> None:  # skopeo's plain lines, as docker's
        if line.startswith("Copying blob "):
            hexd = line.split()[2].partition(":")[2]
            if f"sha256:{hexd}" in layers and f"sha256:{hexd}" not in cached:
                say(f"{hexd[:12]}: Downloading")

    try:
        with _staging() as stage:
            lay_dir = stage / "oci"
            argv = skopeo.copy_argv(ref.at(digest), ref.domain, str(lay_dir), str(blobs), opts)
            with _step(rec, "image", "pull", target=ref.remote(), value=digest,
                       shell=" ".join(["skopeo", *argv[1:]])):
                skopeo.copy(argv, ref.remote(), ref.domain, tty, relay)
            for d in layers:
                if d not in cached:
                    say(f"{d.partition(':')[2][:12]}: Download complete")
            lay = layout.LayoutDir(lay_dir, blobs)
            try:
                planned = layout.plan_layout(lay)
                actual = _check_platform(ref, planned[2].config, plat, explicit, say)
                pulled = {"source": ref.remote(), "digest": top_digest, "platform": actual}
                return layout.import_layout(lay, planned, ref.store_name, ref.store_tag, pulled, stage, rec, say)
            except _Bad as e:
                _drop_bad_blobs(blobs, layers)
                raise EngineError(f"cannot pull {ref.remote()}: {e}") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EngineError(f"cannot pull {ref.remote()}: disk full ({e.strerror}: {e.filename or paths.lib_dir()}); "
                              "free some space (labtui image rm, labtui system prune); nothing was stored") from None
        raise EngineError(f"cannot pull {ref.remote()}: {e}") from None


def _check_platform(ref: reference.Reference, config: dict, plat: reference.Platform, explicit: bool,
                    say: Callable[[str], None]) -> str:
    """The platform the image's config says it is for. A single-platform image for another one is
    refused when --platform named one, and pulled with a warning otherwise, as docker does."""
    got = {"os": config.get("os"), "architecture": config.get("architecture"), "variant": config.get("variant")}
    if not (got["os"] and got["architecture"]) or plat.matches(got):
        return str(plat)
    theirs = "/".join(str(v) for v in got.values() if v)
    if explicit:
        raise EngineError(f"cannot pull {ref.remote()}: the image is for {theirs}, not {plat}")
    say(f"WARNING: the image's platform ({theirs}) does not match this host's ({plat})")
    return theirs


def _drop_bad_blobs(blobs, layers: list[str]) -> None:
    """A blob in the cache that does not hash to its name (damaged on disk since it was verified)
    is deleted, so the next pull fetches it again instead of failing on it forever."""
    import hashlib

    for d in layers:
        p = blobs / "sha256" / d.partition(":")[2]
        try:
            with open(p, "rb") as f:
                h = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            continue
        if h != p.name:
            p.unlink(missing_ok=True)


def _isatty(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _event(ref: reference.Reference, digest: str, plat: reference.Platform, status: str) -> None:
    from engine import events

    events.emit("pull", None, None, image=ref.remote(), digest=digest, platform=str(plat), status=status)

