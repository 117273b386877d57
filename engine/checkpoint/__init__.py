"""Checkpoint and restore a running container with CRIU (docs/checkpoint.md).

checkpoint(): `criu dump` freezes every process of the container, reads its state through a
parasite injected with ptrace (memory, registers, fds, signal masks, namespaces, mounts) into
image files under <container dir>/checkpoints/<name>, and then labtui kills the frozen tree.

restore (engine.api.restore_container, after prepare_restore()): the container's supervisor
starts again in "restore" mode; instead of clone(2) it runs
`criu restore` (in_supervisor.py), which rebuilds the process tree in new namespaces with
the same PIDs inside, as a child of the supervisor (--restore-sibling), so exit codes, logs and
attach keep working as after a normal start.

What CRIU cannot see is declared to it:
- the supervisor's ends of the stdio pipes: the pipes are dumped by inode (`pipe:[123]`) and
  replaced at restore by new pipes of the new supervisor (--inherit-fd fd[N]:pipe:[123]);
- bind mounts of host files (/etc/hosts, /etc/hostname, /etc/resolv.conf, volumes): external
  mounts (--external mnt[/etc/hosts]:hosts at dump, mnt[hosts]:<host file> at restore);
- files that live outside the container's mount namespace: labtui's PID 1 is a Python process
  whose interpreter and libraries are mapped from the host's root, which the container cannot
  reach after pivot_root. Each is an external file (--external file[mnt_id:inode]) and is handed
  back at restore as an open fd (--inherit-fd fd[N]:file[mnt_id:inode]);
- the container's root: an overlay that the restore mounts again in a private mount namespace
  of its own and gives CRIU as --root.

The code is split by the process each part runs in:

    caller.py          the `labtui checkpoint` / `labtui restore` process: criu dump, the restore request
    in_supervisor.py   the container's supervisor in restore mode: criu restore instead of clone
    criu_child.py      the process that becomes `criu restore` (private mount namespace, overlay root)
    criu.py, store.py  shared: the CRIU binary and its command lines; checkpoints on disk

This package re-exports the caller's side and the shared names; the supervisor imports
engine.checkpoint.in_supervisor itself.
"""

from __future__ import annotations

from engine.checkpoint.caller import (
    ETC_FILES,
    check_external_files,
    checkpoint,
    end_restore,
    external_files,
    external_mounts,
    mount_ids,
    prepare_restore,
    stdio_pipes,
)
from engine.checkpoint.criu import (
    BENIGN,
    CRIU_ENV,
    CRIU_MIN_MAJOR,
    FALLBACK_DIRS,
    INSTALL_HINT,
    SOCKETS_AND_LOCKS,
    RestorePlan,
    build_restore,
    criu_path,
    criu_reason,
    criu_version,
    require_criu,
)
from engine.checkpoint.store import (
    MANIFEST,
    NAME_RE,
    checkpoint_dir,
    checkpoints_dir,
    list_checkpoints,
    read_manifest,
    remove_checkpoint,
    validate_name,
)

__all__ = [
    "BENIGN", "CRIU_ENV", "CRIU_MIN_MAJOR", "ETC_FILES", "FALLBACK_DIRS", "INSTALL_HINT", "MANIFEST",
    "NAME_RE", "SOCKETS_AND_LOCKS", "RestorePlan", "build_restore", "check_external_files", "checkpoint",
    "checkpoint_dir", "checkpoints_dir", "criu_path", "criu_reason", "criu_version", "external_files",
    "external_mounts", "list_checkpoints", "mount_ids", "read_manifest", "remove_checkpoint",
    "require_criu", "end_restore", "prepare_restore", "stdio_pipes", "validate_name",
]
