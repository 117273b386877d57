"""Is the helper's code still the code on disk? What it imported once, stamped, and checked per request.

A helper imports labtui once and serves for up to LABTUI_HELPER_IDLE seconds. Were a file it
imported changed meanwhile, its workers would run the old code while an ordinary start would
run the new: the helper would no longer behave as `labtui` does. So what the helper holds in
memory is stamped when it is ready, and a request finding any stamp changed is answered "stale"
(the command runs the ordinary way, and a new helper starts):
  - each of labtui's own module files (engine/, labtui/: an edit, a `git pull`);
  - the packages it depends on (DEPENDENCIES: pyroute2, python3-seccomp's seccomp), upgraded by
    pip or apt under a running helper: the directory of each of their loaded module files (pip
    and dpkg remove, create or rename files there, which changes the directory's mtime: one
    stat for pyroute2's ~15 files a directory) and each package's top module file;
  - the interpreter itself (sys.executable's real path: the venv's python3 is a symlink).
A stamp is (inode, size, mtime in ns): an upgrade writes a new file and renames it over the old
one (a new inode, whatever its mtime); an edit in place changes the mtime. Checking ~80 stamps
takes ~0.08 ms per request.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPENDENCIES = ("pyroute2", "seccomp")  # top-level names of the packages the engine imports

Stamp = dict  # path -> (inode, size, mtime_ns)


def file_id(path: str) -> tuple[int, int, int]:
    """(inode, size, mtime in ns) of path; zeros when it is gone (a change too)."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def stamped_paths(modules: dict, repo: str = REPO, packages: tuple[str, ...] = DEPENDENCIES,
                  executable: str = sys.executable) -> set[str]:
    """What source_stamp() stamps, for these loaded modules (the module docstring's list)."""
    out = {os.path.realpath(executable)}
    for name, mod in list(modules.items()):
        path = getattr(mod, "__file__", None)
        if not path:
            continue
        if path.startswith(repo + os.sep):
            out.add(path)
        elif name.partition(".")[0] in packages:
            out.add(os.path.dirname(path))
            if "." not in name:
                out.add(path)
    return out


def source_stamp(modules: dict | None = None, repo: str = REPO, packages: tuple[str, ...] = DEPENDENCIES,
                 executable: str = sys.executable) -> Stamp:
    """The stamp of what this process holds in memory, as loaded now."""
    paths = stamped_paths(sys.modules if modules is None else modules, repo, packages, executable)
    return {path: file_id(path) for path in paths}


def changed(stamp: Stamp) -> str | None:
    """The first stamped path that changed (or went) since, None when none did (for the log)."""
    return next((path for path, was in stamp.items() if file_id(path) != was), None)


def is_stale(stamp: Stamp) -> bool:
    """Whether any stamped file changed (or went) since."""
    return changed(stamp) is not None
