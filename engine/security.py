"""Security settings applied to a container: capabilities, no_new_privs, seccomp, masked paths.

(Stub: the isolation-and-security issue fills it in.) Hook points used by the runtime:
- prepare(cfg) in the supervisor before clone: build what can be built outside the child
  (the seccomp filter is built before fork and only loaded in the child, as crun does);
- mask_paths(rec, cfg) in the child after pivot_root;
- apply_before_exec(rec, cfg, prepared) in the command's process right before execve.
"""

from __future__ import annotations

from engine.steps import Recorder


def prepare(cfg: dict) -> object | None:
    return None


def mask_paths(rec: Recorder, cfg: dict) -> None:
    return None


def apply_before_exec(rec: Recorder, cfg: dict, prepared: object | None) -> None:
    return None
