"""labtui/launcher/stamp.py: a helper notices changed code, its own and its dependencies'."""

from __future__ import annotations

import os
import sys
import types

from labtui.launcher import stamp


def _module(name: str, path: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__file__ = path
    return mod


def _tree(tmp_path):
    """A fake repo with one module, a fake pyroute2 with a submodule, a fake seccomp extension, an
    unrelated package and a fake interpreter behind a symlink (as a venv's python3 is)."""
    files = {name: tmp_path / rel for name, rel in {
        "engine.x": "repo/engine/x.py", "pyroute2": "site/pyroute2/__init__.py",
        "pyroute2.iproute.linux": "site/pyroute2/iproute/linux.py", "seccomp": "dist/seccomp.so",
        "other": "site/other.py", "python": "usr/bin/python3.11"}.items()}
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("v1\n")
    (tmp_path / "venv-python3").symlink_to(files["python"])
    modules = {n: _module(n, str(f)) for n, f in files.items() if n != "python"}
    return files, modules, str(tmp_path / "repo"), str(tmp_path / "venv-python3")


def test_the_stamp_covers_own_files_the_dependencies_and_the_interpreter(tmp_path):
    files, modules, repo, exe = _tree(tmp_path)
    paths = stamp.stamped_paths(modules, repo, ("pyroute2", "seccomp"), exe)
    assert str(files["engine.x"]) in paths and str(files["python"]) in paths  # the real path
    assert str(files["pyroute2"]) in paths and str(files["seccomp"]) in paths
    assert str(files["pyroute2.iproute.linux"].parent) in paths  # its directory
    assert not any("other" in p for p in paths)
    assert stamp.source_stamp()  # this process's own


def _stale_after(tmp_path, change) -> bool:
    files, modules, repo, exe = _tree(tmp_path)
    st = stamp.source_stamp(modules, repo, ("pyroute2", "seccomp"), exe)
    assert not stamp.is_stale(st)
    change(files)
    return stamp.is_stale(st)


def _upgrade(path) -> None:
    """As pip and dpkg do: a new file renamed over the old one (same size and mtime here)."""
    st = os.stat(path)
    new = path.with_name(path.name + ".new")
    new.write_text("v2\n")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(new, path)


def test_an_upgraded_dependency_or_interpreter_makes_the_helper_stale(tmp_path):
    assert _stale_after(tmp_path / "a", lambda f: _upgrade(f["seccomp"]))
    assert _stale_after(tmp_path / "b", lambda f: _upgrade(f["pyroute2.iproute.linux"]))
    assert _stale_after(tmp_path / "c", lambda f: _upgrade(f["python"]))
    assert not _stale_after(tmp_path / "d", lambda f: _upgrade(f["other"]))


def test_an_edited_own_file_makes_the_helper_stale(tmp_path):
    def touch(files):
        st = os.stat(files["engine.x"])
        os.utime(files["engine.x"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _stale_after(tmp_path, touch)


def test_the_real_dependencies_are_stamped_when_loaded():
    import seccomp  # noqa: F401  (python3-seccomp)

    paths = stamp.stamped_paths(sys.modules)
    assert sys.modules["seccomp"].__file__ in paths
    assert os.path.realpath(sys.executable) in paths
