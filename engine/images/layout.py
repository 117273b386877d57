"""An OCI image layout on disk (what `skopeo copy ... oci:DIR` wrote) into the image store.

The importer's own reader (archive.py: manifest -> config -> layers, every blob checked against its
digest, every layer against its diff_id) reads it through the same interface it reads a tarball
with; the blobs live in the shared pull cache (lib/blobs/sha256/), the layout dir holds only
oci-layout and index.json. A layer whose diff_id is already in layers/ is not extracted again.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.images.archive import _Archive, _oci_manifest, _Plan, _plan_manifest, stage_layer
from engine.images.layers import _safe_parts
from engine.images.record import Image, _Bad, _normalize_config, _now_iso
from engine.images.store import _commit_locked, _store_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO

    from engine.steps import Recorder


class LayoutDir(_Archive):
    """_Archive's interface over a directory: blobs/sha256/X from the shared blob dir."""

    def __init__(self, root: Path, blobs: Path) -> None:  # noqa: D107  (no tarfile to open)
        self.root, self.blobs = root, blobs

    def __exit__(self, *exc: object) -> None:
        return None

    def _path(self, name: str) -> Path:
        parts = _safe_parts(name, "file")
        if len(parts) == 3 and parts[:2] == ("blobs", "sha256"):
            return self.blobs / "sha256" / parts[2]
        return self.root.joinpath(*parts)

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def open(self, name: str) -> IO[bytes]:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _Bad(f"{name} is missing from the pulled layout") from None
        return os.fdopen(fd, "rb")


def manifest_of(lay: LayoutDir) -> dict:
    """The one image manifest skopeo copied (its index.json names exactly one)."""
    index = lay.read_json("index.json")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list) or len(descs) != 1 or not isinstance(descs[0], dict):
        raise _Bad("the pulled layout's index.json does not name exactly one manifest")
    return descs[0]


def plan_layout(lay: LayoutDir) -> tuple[dict, dict, _Plan]:
    """The copied image's descriptor, manifest and plan (its manifest and config digests checked)."""
    desc = manifest_of(lay)
    manifest = _oci_manifest(lay, desc)
    return desc, manifest, _plan_manifest(lay, manifest, [])


def import_layout(lay: LayoutDir, planned: tuple[dict, dict, _Plan], name: str, tag: str, pulled: dict,
                  stage: Path, rec: Recorder | None, say: Callable[[str], None]) -> Image:
    """Extract the layers not yet in the store (each checked against its digest and diff_id),
    then commit name:tag at once."""
    import hashlib

    from engine import paths

    desc, manifest, plan = planned
    pulled["blobs"] = [desc["digest"].split(":", 1)[1], manifest["config"]["digest"].split(":", 1)[1]] + [
        s.digest for s in plan.layers if s.digest]
    staged: dict[str, Path] = {}
    ids: list[str] = []
    size = 0
    for i, src in enumerate(plan.layers):
        short = (src.digest or "")[:12]
        have = paths.layers_dir() / src.diff_id if src.diff_id else None
        if have is not None and have.is_dir():
            ids.append(src.diff_id)  # type: ignore[arg-type]
            size += _tree_size(have)
            say(f"{short}: Already extracted")
            continue
        say(f"{short}: Extracting")
        hexid, lsize = stage_layer(rec, lay, src, stage / f"layer-{i}", staged, value=src.digest or "",
                                   shell=f"tar -xzf {lay.blobs}/sha256/{src.digest} -C {paths.layers_dir()}/<diff_id>")
        ids.append(hexid)
        size += lsize
        say(f"{short}: Pull complete")
    config = _normalize_config(plan.config.get("config"))
    created = plan.config.get("created") if isinstance(plan.config.get("created"), str) else None
    img = Image(name, tag, hashlib.sha256(plan.config_blob).hexdigest(), ids, config, created or _now_iso(),
                size, pulled)
    with _store_lock():
        _commit_locked(staged, [img], rec)
    return img


def _tree_size(root: Path) -> int:
    """Bytes of file data in a layer already extracted (what the import counted when it made it)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            try:
                st = os.lstat(os.path.join(dirpath, fn))
            except OSError:
                continue
            if st.st_mode & 0o170000 == 0o100000:
                total += st.st_size
    return total
