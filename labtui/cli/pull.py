"""`labtui pull IMAGE[:TAG|@DIGEST]`: an image from a registry, with skopeo (engine/images/pull.py)."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub) -> dict:
    p = sub.add_parser("pull", help="download an image from a registry (Docker Hub by default)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="which image of a multi-platform index (default: this host's, e.g. linux/amd64)")
    p.add_argument("--tls-verify", metavar="BOOL", nargs="?", const="true", default=None,
                   help="require HTTPS with a verified certificate (default: yes, except on 127.0.0.0/8; "
                        "--tls-verify=false for a local registry on plain HTTP)")
    p.add_argument("--authfile", metavar="PATH",
                   help="credentials file (default: skopeo's: $REGISTRY_AUTH_FILE, auth.json, ~/.docker/config.json)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image's full reference")
    p.add_argument("image", metavar="IMAGE[:TAG|@DIGEST]")
    return {"pull": cmd_pull}


def _bool(text: str | None) -> bool | None:
    from engine.errors import InvalidArgument

    if text is None:
        return None
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"invalid --tls-verify {text!r}: true or false")


def cmd_pull(args: argparse.Namespace) -> int:
    from engine import api
    from engine.images import pull, reference

    tls = _bool(args.tls_verify)
    img = pull.pull(args.image, platform=args.platform, tls_verify=tls, authfile=args.authfile,
                    out=None if args.quiet else sys.stdout, rec=api.host_recorder())
    if args.quiet:
        print(reference.parse(args.image).remote())
    return 0 if img else 125
