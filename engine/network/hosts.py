"""Name resolution between containers: an /etc/hosts per container, kept current.

The runtime bind-mounts paths.container_dir(cid)/hosts onto the container's /etc/hosts. A bind
mount pins the inode it was made from, so a new file renamed over the old one would stay
invisible inside the container; the file is therefore rewritten in place (same inode: write,
then truncate to the new length) whenever a member of its network joins or leaves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from engine import paths

BASE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def hosts_path(container_id: str) -> Path:
    return paths.container_dir(container_id) / "hosts"


def _names(*groups: Iterable[str]) -> list[str]:
    """Unique, non-empty names in first-seen order (a name may be hostname and name at once)."""
    seen: list[str] = []
    for group in groups:
        for n in group:
            if n and n not in seen:
                seen.append(n)
    return seen


def render_hosts(container_id: str, hostname: str, network_members: Iterable[dict]) -> str:
    """The hosts file of one container.

    network_members: dicts with id, name, ip and aliases (hostname optional), the container
    itself included when it is attached. Its own line carries its hostname first, as `hostname
    -i` expects; a container with no network gets 127.0.1.1 for its hostname, as Debian does.
    """
    members = list(network_members)
    lines = [BASE]
    own = next((m for m in members if m["id"] == container_id), None)
    if own is None:
        if hostname:
            lines.append(f"127.0.1.1\t{hostname}\n")
    else:
        names = _names([hostname, own.get("name", "")], own.get("aliases", []))
        lines.append(f"{own['ip']}\t{' '.join(names)}\n")
    for m in members:
        if m["id"] == container_id:
            continue
        names = _names([m.get("name", "")], m.get("aliases", []))
        if names:
            lines.append(f"{m['ip']}\t{' '.join(names)}\n")
    return "".join(lines)


def write_in_place(path: Path | str, content: str) -> None:
    """Replace the file's content keeping its inode.

    Write first, truncate after: a reader racing with us sees the old text, the new text, or
    the new text followed by a tail of the old; never an empty file.
    """
    data = content.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def refresh_network_hosts(network_name: str, members: list[dict] | None = None) -> list[str]:
    """Rewrite the hosts file of every member of a network; returns the ids written.

    members defaults to the network's attached leases. A member whose container directory does
    not exist (removed, or never made by the runtime) is skipped: we never create state for a
    container that is not there. A member dict may carry 'hosts_path' to override the path.
    """
    from engine.network import ipam

    with ipam.store_lock():  # so a refresh never writes an older membership over a newer one
        if members is None:
            members = ipam.network_members(network_name)
        written = []
        for m in members:
            path = Path(m.get("hosts_path") or hosts_path(m["id"]))
            if not path.parent.is_dir():
                continue
            write_in_place(path, render_hosts(m["id"], m.get("hostname") or m.get("name", ""), members))
            written.append(m["id"])
        return written
