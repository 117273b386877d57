"""Netlink access for the network code: pyroute2's IPRoute, opened lazily, and the step wrapper.

Why lazy: `import pyroute2` costs ~200 ms, and a container with --network none must never pay
it, so nothing at module level here (or in engine.network) imports pyroute2.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine import syscalls
from engine.errors import StepError
from engine.steps import Recorder

if TYPE_CHECKING:  # for the annotations only; never imported at run time from here
    from pyroute2 import IPRoute

NETLINK_ROUTE = 0


def _iproute_class() -> type[IPRoute]:
    """pyroute2's IPRoute class, without running the package's __init__ when we can.

    Why: `import pyroute2` imports every part of the library (NDB, IPDB, conntrack, ...) and
    costs ~120 ms more than the module that defines IPRoute (pyroute2.iproute.linux). The
    package module is created without executing its __init__; the first use of any other name
    from it (someone else's `from pyroute2 import X`) runs the real __init__ then.
    """
    import sys

    if "pyroute2" not in sys.modules:
        import importlib
        import importlib.util

        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.loader is not None and spec.submodule_search_locations:
            pkg = importlib.util.module_from_spec(spec)
            done: list[bool] = []

            def __getattr__(name: str) -> object:
                try:  # `from pyroute2 import config` inside the library: a submodule
                    return importlib.import_module(f"pyroute2.{name}")
                except ModuleNotFoundError:
                    pass
                if not done:
                    done.append(True)
                    spec.loader.exec_module(pkg)  # the whole package, as a plain import would
                    if name in pkg.__dict__:
                        return pkg.__dict__[name]
                raise AttributeError(name)

            pkg.__getattr__ = __getattr__  # type: ignore[attr-defined]  # PEP 562
            sys.modules["pyroute2"] = pkg
    from pyroute2.iproute.linux import IPRoute as cls

    return cls


def host_ipr() -> IPRoute:
    """An rtnetlink socket in the namespace of the calling process (the host's)."""
    return _iproute_class()()


def netns_ipr(ns_fd: int) -> IPRoute:
    """An rtnetlink socket that lives in the network namespace open as ns_fd.

    A socket stays in the namespace it was created in, whoever uses it later, and setns(2) with
    CLONE_NEWNET moves only the calling thread; so a short-lived thread enters the namespace,
    creates the socket and exits, and IPRoute adopts the socket through its documented
    `fileno` argument. Why not IPRoute(netns=...): in pyroute2 0.9 that forks a helper process
    to make the socket, and forking the supervisor (which runs proxy threads) is riskier and
    slower than a thread.
    """
    from engine.namespaces import call_in

    sock = call_in(ns_fd, syscalls.CLONE_NEWNET,
                   lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE), "labtui-netns-socket")
    return _iproute_class()(fileno=sock.detach())


@contextmanager
def nl_step(rec: Recorder, op: str, target: str = "", value: str = "", shell: str = "") -> Iterator[dict]:
    """A recorded "network" step around one netlink request.

    pyroute2 raises NetlinkError (not an OSError) carrying the kernel's errno in .code; turning
    it into OSError lets the Recorder store the real errno name (EEXIST, ENODEV, ...) and raise
    the StepError every other mechanism raises.
    """
    with rec.step("network", op, target=target, value=value, shell=shell) as s:
        try:
            yield s
        except OSError:
            raise
        except Exception as e:
            code = getattr(e, "code", None)
            if type(e).__name__ == "NetlinkError" and isinstance(code, int) and code > 0:
                raise OSError(code, os.strerror(code)) from e
            raise


def step_errno(e: StepError) -> int:
    """The errno a failed step recorded (0 if it failed without one)."""
    return int(e.step.get("errno") or 0)


def delete_link(ifname: str, rec: Recorder) -> bool:
    """`ip link del`; False if the link was already gone (ENODEV is recorded, not raised)."""
    with host_ipr() as ipr:
        try:
            with nl_step(rec, "link_del", target=ifname, shell=f"ip link del {ifname}"):
                ipr.link("del", ifname=ifname)
        except StepError as e:
            if step_errno(e) == errno.ENODEV:
                return False
            raise
    return True
