"""rm: take down everything a container owns (used by the facade and by a --rm container's
supervisor, which removes its own container once it exited).

remove() kills what still runs (through engine/process.py's pidfd signals), then teardown()
undoes what create and start made: cgroups and network links (engine/hooks.py's cleanup), the
runtime directory, the attach socket, the container's directory and its name.
"""

from __future__ import annotations

import errno
import os
import signal

from engine import events, paths, state
from engine.errors import Conflict
from engine.process import send_signal, wait_pid_exit
from engine.state import Container


def remove(ref: str, force: bool = False, from_supervisor: bool = False,
           deferred: list | None = None) -> None:
    """rm: kill if asked, then take down everything the container owns. With deferred (a list),
    the container's directory is renamed out of the way (it is gone for every reader), and its
    deletion (and a veth's) appended there as callables for the caller to run after it has let
    its waiting clients go."""
    c = state.resolve(ref)
    st = c.status
    if st in (state.RUNNING, state.PAUSED, state.RESTARTING) and not force:
        raise Conflict(f"cannot remove running container {c.name}: stop it first or use rm -f")
    with state.locked(c.id):
        c.reload()
        if c.state.get("removing") == "supervisor" and from_supervisor:
            pass  # marked with the exit record already (Supervisor.finish): one write fewer
        elif c.removal_alive():
            return  # another rm is at it
        else:
            # Who removes it: a mark whose remover died (SIGKILLed half-way) is taken over.
            c.state["removing"] = "supervisor" if from_supervisor else True
            if from_supervisor:
                c.state.pop("remover", None)
            else:
                c.state["remover"] = [os.getpid(), state.proc_start_time(os.getpid()), state.boot_id()]
                # A manual stop too, as for `stop`: the supervisor's exit record rewrites
                # "removing" (engine/supervisor.py, finish), and a restart policy read after it
                # restarted the container under rm, which then waited 5 s for the supervisor.
                c.state["manual_stop"] = True
            if force and not from_supervisor and c.init_alive():
                # rm -f kills it: a death asked for, as by `labtui kill`, never a crash (the
                # supervisor's exit record reads this; engine/restart.py describe_exit).
                c.state["kill_requested"] = signal.Signals.SIGKILL.name
            try:
                state.write_json_atomic(c.dir / "state.json", c.state)
            except OSError as e:
                # The mark only makes a concurrent rm back off; on a full disk, rm is how space
                # is freed, so it goes on without it (issue 15, faults).
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
    if c.init_alive():
        _thaw_quietly(c)
        try:
            send_signal(c, signal.SIGKILL)
        except Conflict:
            pass
        wait_pid_exit(c.state["pid"], 10)
    if not from_supervisor and c.supervisor_alive():
        # Let the supervisor write its last records, then make sure it is gone.
        if not wait_pid_exit(c.state["supervisor_pid"], 5) and c.supervisor_alive():
            os.kill(c.state["supervisor_pid"], signal.SIGKILL)
            wait_pid_exit(c.state["supervisor_pid"], 5)
    teardown(c, deferred)
    events.emit("removed", c.id, c.name)


def _thaw_quietly(c: Container) -> None:
    # A task frozen by cgroup v1's freezer does not act on SIGKILL until it is thawed.
    try:
        from engine import hooks

        hooks.thaw(c)
    except Exception:
        pass


def teardown(c: Container, deferred: list | None = None) -> None:
    """Remove everything a container owns: cgroups, links, upper/work dirs, runtime files, name."""
    import shutil

    from engine import hooks
    from engine.steps import container_recorder

    hooks.cleanup(container_recorder(c.id), c, deferred)
    shutil.rmtree(c.run_dir, ignore_errors=True)
    try:
        os.unlink(paths.attach_socket(c.id))
    except FileNotFoundError:
        pass
    # One rename takes the directory away at once; deleting its files (on ext4, each waits for
    # the block bitmap the journal is writing) can then happen off the caller's critical path.
    trash = paths.trash_dir() / c.id
    try:
        trash.parent.mkdir(exist_ok=True)
        os.rename(c.dir, trash)
    except OSError:
        trash = c.dir
    state.release_name(c.name, c.id)
    if deferred is not None:
        deferred.append(lambda: shutil.rmtree(trash, ignore_errors=True))
    else:
        shutil.rmtree(trash, ignore_errors=True)


def empty_trash() -> None:
    """Directories of removed containers whose deletion was cut short (a killed supervisor)."""
    import shutil

    d = paths.trash_dir()
    for name in os.listdir(d) if d.is_dir() else []:
        shutil.rmtree(d / name, ignore_errors=True)
