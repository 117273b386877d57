"""skopeo, the registry client labtui pulls with: how it is run, and what its errors mean.

skopeo (Debian's package; the containers/image library podman itself uses) speaks the registry
protocol: it resolves a tag to a manifest, negotiates auth tokens, reads credentials from the
standard files (REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.docker/config.json),
applies /etc/containers/registries.conf (mirrors, insecure and blocked registries) and checks each
blob against its digest while it streams. labtui asks it for two things only:

    skopeo inspect --raw docker://REPO:TAG          the manifest or index, as the registry sent it
    skopeo copy docker://REPO@DIGEST oci:DIR:img    one image, its blobs into labtui's blob cache
         --dest-shared-blob-dir /var/lib/labtui/blobs

It runs with the caller's environment, so the credentials are the caller's (root's under sudo).
"""

from __future__ import annotations

import os
import re
import subprocess

from engine.errors import EngineError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO


class Options:
    """What the user said about how to reach the registry."""

    def __init__(self, tls_verify: bool | None = None, authfile: str | None = None) -> None:
        self.tls_verify = tls_verify  # None: skopeo's default, i.e. registries.conf's word
        self.authfile = authfile

    def src_args(self, domain: str, prefix: str = "src-") -> list[str]:
        args = []
        tls = self.tls_verify
        if tls is None and _loopback(domain):
            tls = False  # docker's default: 127.0.0.0/8 registries are insecure registries
        if tls is not None:
            args.append(f"--{prefix}tls-verify={'true' if tls else 'false'}")
        if self.authfile:
            args.append(f"--{prefix}authfile={self.authfile}" if prefix else f"--authfile={self.authfile}")
        return args


def _loopback(domain: str) -> bool:
    host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
    return host == "localhost" or host.startswith("127.") or host in ("[::1]", "::1")


def binary() -> str:
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":") + ["/usr/bin"]:
        p = os.path.join(d or ".", "skopeo")
        if os.access(p, os.X_OK):
            return p
    raise EngineError("cannot pull: skopeo is not installed (apt-get install skopeo; sudo ./scripts/install does)")


def inspect_raw(ref: str, domain: str, opts: Options) -> bytes:
    """The manifest (or index) bytes for docker://ref, exactly as the registry sent them."""
    argv = [binary(), "inspect", "--raw", *opts.src_args(domain, prefix=""), f"docker://{ref}"]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise EngineError(f"cannot pull {ref}: no network: the registry {domain} did not answer in 300 s") from None
    if p.returncode != 0:
        raise classify(p.stderr.decode(errors="replace"), ref, domain)
    return p.stdout


def copy_argv(src: str, domain: str, layout: str, blobs: str, opts: Options) -> list[str]:
    # --dest-oci-accept-uncompressed-layers: keep a plain tar layer as it is (by default skopeo
    # gzips it for an OCI layout, and its digest would no longer be the registry's).
    return [binary(), "copy", *opts.src_args(domain), "--dest-shared-blob-dir", blobs,
            "--dest-oci-accept-uncompressed-layers", f"docker://{src}", f"oci:{layout}:img"]


def copy(argv: list[str], ref: str, domain: str, tty: IO | None, on_line) -> None:
    """Run skopeo copy. On a terminal its own progress bars (one per layer) go straight to it;
    otherwise each line it prints is handed to on_line. Its stderr is kept for classify()."""
    import tempfile

    with tempfile.TemporaryFile() as err:
        stdout = tty.fileno() if tty is not None else subprocess.PIPE
        p = subprocess.Popen(argv, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL)
        try:
            if p.stdout is not None:
                for raw in p.stdout:
                    on_line(raw.decode(errors="replace").rstrip("\r\n"))
            rc = p.wait()
        finally:
            if p.returncode is None:  # ^C or an error in on_line: skopeo must not outlive us
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
        if rc != 0:
            err.seek(0)
            raise classify(err.read().decode(errors="replace"), ref, domain)


_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def _message(stderr: str) -> str:
    """skopeo's last error, without its logrus decoration (time=... level=fatal msg="...")."""
    msgs = _MSG.findall(stderr)
    text = msgs[-1].encode().decode("unicode_escape", errors="replace") if msgs else stderr.strip()
    text = re.sub(r'^Error parsing image name "[^"]*": ', "", text)
    return text.splitlines()[-1] if text else "skopeo failed with no message"


def classify(stderr: str, ref: str, domain: str) -> EngineError:
    """skopeo's failure as the cause a student can act on; the registry's own words in brackets."""
    msg = _message(stderr)
    low = msg.lower()
    where = f"cannot pull {ref}"
    if "no space left on device" in low or "disk quota exceeded" in low:
        return EngineError(f"{where}: disk full ({msg}); free some space (labtui image rm, labtui system prune)")
    if "digest did not match" in low or "digest mismatch" in low or "does not match digest" in low:
        return EngineError(f"{where}: digest mismatch: a blob from {domain} is not what its digest says "
                           f"(corrupted in the registry or on the way); nothing was stored [{msg}]")
    if "manifest unknown" in low or "name unknown" in low or "not found" in low and "manifest" in low:
        return NotFound(f"{where}: unknown image or tag: {domain} has no such repository or tag [{msg}]")
    if any(w in low for w in ("unauthorized", "authentication required", "denied")) or re.search(r"\b401\b", low):
        return EngineError(f"{where}: auth required: {domain} refused access; the image may not exist, or "
                           "needs credentials: `skopeo login " + domain + "` (or ~/.docker/config.json, "
                           f"REGISTRY_AUTH_FILE, --authfile) [{msg}]")
    if "server gave http response to https client" in low:
        return EngineError(f"{where}: {domain} speaks plain HTTP, not HTTPS: add --tls-verify=false, or mark it "
                           f"insecure in /etc/containers/registries.conf [{msg}]")
    if "x509" in low or "certificate" in low or "tls:" in low:
        return EngineError(f"{where}: the TLS certificate of {domain} could not be verified: add its CA "
                           f"under /etc/containers/certs.d/{domain}/, or --tls-verify=false [{msg}]")
    if any(w in low for w in ("no such host", "connection refused", "network is unreachable", "i/o timeout",
                              "dial tcp", "connection reset", "timeout", "temporary failure in name resolution")):
        return EngineError(f"{where}: no network: cannot reach the registry {domain} [{msg}]")
    if "unsupported" in low or "mime type" in low or "media type" in low or "manifest type" in low:
        return EngineError(f"{where}: unsupported media type [{msg}]")
    return EngineError(f"{where}: {msg}")
