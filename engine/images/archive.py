"""`labtui image import`: a `docker save` tarball or an OCI image layout into the store.

The archive is read in two passes: first its manifests and configs are planned (nothing is
written, every name and digest is checked), then each layer is extracted into a staging dir and
the whole import is committed at once under the store lock.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from engine.errors import EngineError, InvalidArgument, NotFound
from engine.images.layers import _extract_layer, _LayerSource, _safe_parts, _tar_reason
from engine.images.record import _TAG, Image, _Bad, _host_arch, _normalize_config, _now_iso, _split_ref
from engine.images.store import _commit_locked, _rmtree, _staging, _step, _store_lock
from engine.record import dataclass, field

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import IO, Any

    from engine.steps import Recorder

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_MAX_JSON = 16 << 20  # manifests and configs are small; refuse to slurp anything bigger

_OCI_INDEX = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_OCI_MANIFEST = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
_LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}


def import_archive(
    path: str | os.PathLike, ref: str | None = None, *, rec: Recorder | None = None
) -> list[Image]:
    """Import a `docker save` tarball or an OCI image layout tarball; returns the images tagged.

    ref names the image (its tag, if written, overrides the archive's too); without it the
    archive's RepoTags / org.opencontainers.image.ref.name are used. On any failure nothing is
    left behind: everything is extracted in a staging dir and only renamed into place at the end.
    """
    import gzip
    import tarfile
    import zlib

    src = Path(path)
    override = _split_ref(ref) if ref is not None else None
    if src.is_dir():
        raise InvalidArgument(f"cannot import {src}: it is a directory; pack it first: tar -cf image.tar -C {src} .")
    if not src.is_file():
        raise NotFound(f"cannot import {src}: no such file")
    try:
        with _Archive(src) as arc:
            plans = _plan(arc)
            named = _name_plans(plans, override)
            with _staging() as stage:
                images, staged = _stage_images(arc, named, stage, rec)
                with _store_lock():
                    _commit_locked(staged, images, rec)
    except _Bad as e:
        raise InvalidArgument(f"cannot import {src}: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeError) as e:
        raise InvalidArgument(f"cannot import {src}: {_tar_reason(e)}") from None
    except OSError as e:
        raise EngineError(f"cannot import {src}: {e}") from None
    return images


# --------------------------------------------------------------------------------------------
# Planning: what the archive holds, before anything is written


@dataclass
class _Plan:
    """One image found in an archive, before anything is written."""

    config_blob: bytes
    config: dict
    layers: list[_LayerSource]
    refs: list[tuple[str | None, str | None]] = field(default_factory=list)  # (name, tag)


class _Archive:
    """Random access to the members of the outer tarball (which may itself be compressed)."""

    def __init__(self, path: Path) -> None:
        import tarfile

        try:
            self.tf = tarfile.open(path, "r:*")
        except tarfile.ReadError:
            raise _Bad("not a tar archive; expected a `docker save` or OCI image layout tarball") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in self.tf.getmembers():
            try:
                self.members["/".join(_safe_parts(m.name))] = m
            except _Bad:
                continue  # never looked up: we only open the names the manifests give

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tf.close()

    def has(self, name: str) -> bool:
        return "/".join(_safe_parts(name)) in self.members

    def open(self, name: str) -> IO[bytes]:
        m = self.members.get("/".join(_safe_parts(name, "file")))
        if m is None:
            raise _Bad(f"{name} is missing from the archive")
        f = self.tf.extractfile(m)
        if f is None:
            raise _Bad(f"{name} in the archive is not a file")
        return f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            data = f.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise _Bad(f"{name} is too large for a manifest or config")
        return data

    def read_json(self, name: str, data: bytes | None = None) -> Any:
        try:
            return json.loads(self.read(name) if data is None else data)
        except ValueError as e:
            raise _Bad(f"{name} is not valid JSON ({e})") from None


def _plan(arc: _Archive) -> list[_Plan]:
    if arc.has("manifest.json"):
        return _plan_docker(arc)
    if arc.has("index.json"):
        return _plan_oci(arc)
    raise _Bad(
        "neither a `docker save` archive (no manifest.json) nor an OCI image layout (no index.json)"
    )


def _diff_ids(config: dict, n_layers: int) -> list[str | None]:
    rootfs = config.get("rootfs") or {}
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not ids:
        return [None] * n_layers
    if not isinstance(ids, list) or len(ids) != n_layers:
        raise _Bad(f"the image config lists {len(ids)} layers but the manifest has {n_layers}")
    out: list[str | None] = []
    for d in ids:
        m = _DIGEST.fullmatch(d) if isinstance(d, str) else None
        if m is None:
            raise _Bad(f"unsupported layer diff_id {d!r} (only sha256 is supported)")
        out.append(m.group(1))
    return out


def _parse_config(arc: _Archive, name: str, blob: bytes) -> dict:
    config = arc.read_json(name, blob)
    if not isinstance(config, dict):
        raise _Bad(f"image config {name} is not a JSON object")
    return config


def _plan_docker(arc: _Archive) -> list[_Plan]:
    """manifest.json: [{"Config": "<hex>.json", "RepoTags": ["name:tag"], "Layers": [...]}, ...]"""
    manifest = arc.read_json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise _Bad("manifest.json lists no images")
    plans = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise _Bad("manifest.json entry without a Config")
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise _Bad("manifest.json entry without a list of Layers")
        blob = arc.read(entry["Config"])
        config = _parse_config(arc, entry["Config"], blob)
        sources = []
        for member, diff_id in zip(layers, _diff_ids(config, len(layers)), strict=True):
            # docker >= 25 stores layers as content-addressed blobs: their name is their digest.
            m = re.fullmatch(r"(?:\./)?blobs/sha256/([0-9a-f]{64})", member)
            sources.append(_LayerSource(member, m.group(1) if m else None, diff_id))
        refs = []
        for t in entry.get("RepoTags") or []:
            refs.append(_archive_ref(str(t)))
        plans.append(_Plan(blob, config, sources, refs))
    return plans


def _archive_ref(ref: str) -> tuple[str, str]:
    try:
        name, tag = _split_ref(ref)
    except InvalidArgument as e:
        raise _Bad(f"the archive names the image {ref!r}, which labtui cannot use: {e}") from None
    return name, tag or "latest"


def _blob(arc: _Archive, desc: Any, what: str) -> tuple[str, bytes]:
    """Read a small blob named by an OCI descriptor and check it against its digest."""
    import hashlib

    if not isinstance(desc, dict):
        raise _Bad(f"{what} descriptor is not a JSON object")
    m = _DIGEST.fullmatch(str(desc.get("digest", "")))
    if m is None:
        raise _Bad(f"{what} has an unsupported digest {desc.get('digest')!r} (only sha256 is supported)")
    name = f"blobs/sha256/{m.group(1)}"
    data = arc.read(name)
    if hashlib.sha256(data).hexdigest() != m.group(1):
        raise _Bad(f"{what} {name} does not match its digest (corrupt archive)")
    return name, data


def _platform_ok(desc: dict) -> bool:
    ann = desc.get("annotations") or {}
    if ann.get("vnd.docker.reference.type") == "attestation-manifest":
        return False  # buildkit's provenance records, not images
    plat = desc.get("platform")
    if not isinstance(plat, dict):
        return True
    return plat.get("os") == "linux" and plat.get("architecture") == _host_arch()


def _oci_manifest(arc: _Archive, desc: dict, depth: int = 0) -> dict:
    """Follow a descriptor (through nested indexes, choosing this host's platform) to a manifest."""
    if depth > 4:
        raise _Bad("OCI indexes nested too deeply")
    name, data = _blob(arc, desc, "manifest")
    doc = arc.read_json(name, data)
    if not isinstance(doc, dict):
        raise _Bad(f"{name} is not a JSON object")
    media = desc.get("mediaType") or doc.get("mediaType")
    if media in _OCI_INDEX or (media is None and "manifests" in doc):
        candidates = [d for d in doc.get("manifests") or [] if isinstance(d, dict) and _platform_ok(d)]
        if not candidates:
            raise _Bad(f"the image index has no linux/{_host_arch()} image")
        return _oci_manifest(arc, candidates[0], depth + 1)
    if media not in _OCI_MANIFEST and not (media is None and "layers" in doc):
        raise _Bad(f"unsupported manifest media type {media!r}")
    return doc


def _plan_oci(arc: _Archive) -> list[_Plan]:
    """oci-layout + index.json -> manifest -> config + layers, all blobs under blobs/sha256/."""
    if not arc.has("oci-layout"):
        raise _Bad("index.json without oci-layout: not an OCI image layout")
    layout = arc.read_json("oci-layout")
    version = str(layout.get("imageLayoutVersion", "")) if isinstance(layout, dict) else ""
    if not version.startswith("1."):
        raise _Bad(f"unsupported OCI layout version {version!r}")
    index = arc.read_json("index.json")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list) or not descs:
        raise _Bad("index.json lists no manifests")
    plans = []
    for desc in descs:
        if not isinstance(desc, dict) or not _platform_ok(desc):
            continue
        plans.append(_plan_manifest(arc, _oci_manifest(arc, desc), [_oci_ref(desc)]))
    if not plans:
        raise _Bad(f"index.json has no linux/{_host_arch()} image")
    return plans


def _plan_manifest(arc: _Archive, manifest: dict, refs: list[tuple[str | None, str | None]]) -> _Plan:
    """One image manifest -> its config (checked against its digest) and its layers' sources."""
    cfg_name, blob = _blob(arc, manifest.get("config"), "image config")
    config = _parse_config(arc, cfg_name, blob)
    layer_descs = manifest.get("layers")
    if not isinstance(layer_descs, list):
        raise _Bad("manifest has no list of layers")
    sources = []
    for ld, diff_id in zip(layer_descs, _diff_ids(config, len(layer_descs)), strict=True):
        if not isinstance(ld, dict):
            raise _Bad("layer descriptor is not a JSON object")
        media = ld.get("mediaType")
        if media not in _LAYER_TYPES:
            hint = " (zstd is not supported; re-export with gzip)" if "zstd" in str(media) else ""
            raise _Bad(f"unsupported layer media type {media!r}{hint}")
        m = _DIGEST.fullmatch(str(ld.get("digest", "")))
        if m is None:
            raise _Bad(f"layer has an unsupported digest {ld.get('digest')!r}")
        sources.append(_LayerSource(f"blobs/sha256/{m.group(1)}", m.group(1), diff_id, media))
    return _Plan(blob, config, sources, refs)


def _oci_ref(desc: dict) -> tuple[str | None, str | None]:
    """(name, tag) from the index annotations; a bare ref.name is a tag, as the OCI spec says."""
    ann = desc.get("annotations") or {}
    full = ann.get("io.containerd.image.name")  # docker/containerd write the full name here
    ref_name = ann.get("org.opencontainers.image.ref.name")
    if isinstance(full, str) and full:
        return _archive_ref(full)
    if isinstance(ref_name, str) and ref_name:
        if ":" in ref_name or "/" in ref_name:
            return _archive_ref(ref_name)
        if _TAG.fullmatch(ref_name):
            return None, ref_name
    return None, None


_Named = list[tuple[_Plan, list[tuple[str, str]]]]  # each image found and the name:tags it gets


def _name_plans(plans: list[_Plan], override: tuple[str, str | None] | None) -> _Named:
    """Decide the name:tag of every image to write; refuse ambiguity before extracting anything."""
    out = []
    seen: set[tuple[str, str]] = set()
    for plan in plans:
        if override is not None:
            name, tag = override
            tags = [tag] if tag else [t for _n, t in plan.refs if t] or ["latest"]
            refs = [(name, t) for t in dict.fromkeys(tags)]
        else:
            refs = [(n, t or "latest") for n, t in plan.refs if n]
            if not refs:
                raise _Bad("the archive does not name its image; give it a name, e.g. 'lab/app:1.0'")
        for r in refs:
            if r in seen:
                raise _Bad(f"two images in the archive would both be {r[0]}:{r[1]}; import them one by one")
            seen.add(r)
        out.append((plan, refs))
    return out


def _stage_images(
    arc: _Archive, named: _Named, stage: Path, rec: Recorder | None
) -> tuple[list[Image], dict[str, Path]]:
    """Extract every layer into the staging dir; build the Image records (not yet written)."""
    import hashlib

    staged: dict[str, Path] = {}  # layer id -> its dir in staging
    by_member: dict[str, tuple[str, int]] = {}  # a layer shared by two images is extracted once
    images: list[Image] = []
    for n, (plan, refs) in enumerate(named):
        ids, size = [], 0
        for src in plan.layers:
            if src.member not in by_member:
                by_member[src.member] = stage_layer(rec, arc, src, stage / f"layer-{len(by_member)}", staged,
                                                    value=str(n))
            hexid, lsize = by_member[src.member]
            ids.append(hexid)
            size += lsize
        config = _normalize_config(plan.config.get("config"))
        created = plan.config.get("created") if isinstance(plan.config.get("created"), str) else None
        image_id = hashlib.sha256(plan.config_blob).hexdigest()  # docker's image id
        for name, tag in refs:
            images.append(Image(name, tag, image_id, list(ids), config, created or _now_iso(), size))
    return images, staged


def stage_layer(rec: Recorder | None, source, src, tmp: Path, staged: dict[str, Path], value: str = "",
                shell: str = "") -> tuple[str, int]:
    """Extract one layer member of `source` (an archive or an OCI layout: anything with
    open(member)) into tmp as an extract-layer step, checking its digests; a layer already staged
    under the same diff_id is dropped. Returns (diff_id hex, size)."""
    with _step(rec, "image", "extract-layer", target=src.member, value=value, shell=shell) as s:
        with source.open(src.member) as f:
            hexid, lsize = _extract_layer(f, tmp, src)
        s["value"] = hexid
    if hexid in staged:
        _rmtree(tmp)
    else:
        staged[hexid] = tmp
    return hexid, lsize
