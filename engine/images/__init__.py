"""The image store: read-only layers on disk, and small JSON records that name them.

Layout (under paths.lib_dir(), i.e. /var/lib/labtui or $LABTUI_ROOT/lib):

    layers/<sha256-hex>/          one directory per layer, the layer tar extracted as-is;
                                  mounted later as an OverlayFS lowerdir. The id is the sha256
                                  of the *uncompressed* layer tar (docker's "diff_id"), so the
                                  same layer arriving gzip'd in one archive and plain in another
                                  is stored once.
    images/<name>/<tag>.json      {"name","tag","id","layers":[hex, lowest first],"config":{...},
                                   "created","size"}
    images.lock                   flock(2)'d while the store changes
    .staging-*/                   private work dirs; an import extracts here and renames into place
    blobs/sha256/<hex>            the pull cache: registry blobs, verified, shared by every pull

Whiteouts stay in the overlay format the kernel reads: a layer tar's ``.wh.NAME`` becomes a
character device 0:0 called NAME, and ``.wh..wh..opq`` the xattr trusted.overlay.opaque=y on its
directory (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories").

The modules, lowest first (each imports only those above it, never this package):

    record.py    the Image record, name:tag references, the image config
    store.py     the lock, staging dirs, atomic commits; list_images, remove
    layers.py    one layer tar extracted into its directory (whiteouts, safe paths)
    archive.py   import_archive: `docker save` and OCI layouts, planned then staged
    busybox.py   busybox:latest built from the host's busybox; resolve()
    reference.py docker's reference rules (alpine -> docker.io/library/alpine:latest), --platform
    skopeo.py    running skopeo (the registry client) and naming the cause of its errors
    layout.py    the OCI layout skopeo copied (blobs in lib/blobs/) read by the importer
    pull.py      `labtui pull`, and run/create's --pull policy (imported only when it is needed)

Why resolve() imports nothing heavy: it runs on every ``labtui run`` and must cost one JSON read.
tarfile, gzip, hashlib, shutil and subprocess are imported inside the functions that need them.
"""

from engine import paths  # noqa: F401  (images.paths: where the store lives, for its callers)
from engine.images.archive import import_archive
from engine.images.busybox import (
    BUSYBOX,
    BUSYBOX_NAME,
    BUSYBOX_TAG,
    DEFAULT_PATH,
    _is_static_elf,
    check_layers,
    ensure_busybox,
    resolve,
)
from engine.images.record import Image, _host_arch, parse_ref
from engine.images.store import image_size, list_images, remove

__all__ = [
    "BUSYBOX", "BUSYBOX_NAME", "BUSYBOX_TAG", "DEFAULT_PATH", "Image", "_host_arch", "_is_static_elf", "check_layers",
    "ensure_busybox", "image_size", "import_archive", "list_images", "parse_ref", "remove", "resolve",
]
