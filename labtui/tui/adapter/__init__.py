"""The terminal app's only door to the engine (as harlequin's adapters are to databases).

Screens and widgets import this package, never `engine`, and call `adapter.NAME`. Everything
here is plain data in, plain data out, safe to call from a worker thread, with no Textual
import: it reads the engine's state files and streams (engine.state, engine.paths), the kernel
through the engine's readers (engine.procfs, engine.network.procnet, engine.ipc, engine.cgroups),
and drives the engine through engine.api. One module per panel's data:

    base        the errors an action may raise, a container's state, number formats
    host        the dashboard's header (kernel, cgroup layout) and the startup sweep
    dashboard   one row per container (CPU %, memory) and a container screen's title
    lifecycle   the run form and the lifecycle keys (start, stop, pause, checkpoint ...)
    streams     following JSON-lines streams (logs, events)
    steps       the steps tab and the step gate
    namespaces  the namespaces and processes tabs
    cgroups     the cgroups tab and the dashboard's cheap usage reading
    ipc         the IPC tab
    network     the network tab
    security    the security tab
    strace      the strace tab and key
    attacks     the attack lab
"""

from labtui.tui.adapter.attacks import AttackInfo, attacks, run_attack
from labtui.tui.adapter.base import ERRORS, human_bytes, short_duration
from labtui.tui.adapter.cgroups import CgroupView, cgroup_view
from labtui.tui.adapter.dashboard import ContainerInfo, ContainerRow, Sampler, container_info
from labtui.tui.adapter.host import host_facts, on_startup
from labtui.tui.adapter.ipc import IpcObject, IpcView, create_container_shm, create_host_shm, ipc_view, remove_host_shm
from labtui.tui.adapter.lifecycle import (
    RunForm,
    checkpoint,
    create,
    kill,
    remove,
    restart,
    restore,
    run_options,
    shell_argv,
    start,
    stop,
    toggle_pause,
)
from labtui.tui.adapter.namespaces import NamespacesView, NsRow, Proc, namespaces_view, processes
from labtui.tui.adapter.network import HostLink, Iface, NetworkView, network_view
from labtui.tui.adapter.security import SecurityView, decode_caps, security_view
from labtui.tui.adapter.steps import container_dir, gate_pending, gate_release, mechanisms, shorten, steps_tail
from labtui.tui.adapter.strace import StraceView, stop_traces, strace_summary, toggle_trace
from labtui.tui.adapter.streams import Tail, container_events_tail, events_tail, logs_tail

__all__ = [
    "ERRORS", "AttackInfo", "CgroupView", "ContainerInfo", "ContainerRow", "HostLink", "Iface", "IpcObject",
    "IpcView", "NamespacesView", "NetworkView", "NsRow", "Proc", "RunForm", "Sampler", "SecurityView",
    "StraceView", "Tail", "attacks", "cgroup_view", "checkpoint", "container_dir", "container_events_tail",
    "container_info", "create", "create_container_shm", "create_host_shm", "decode_caps", "events_tail",
    "gate_pending", "gate_release", "host_facts", "human_bytes", "ipc_view", "kill", "logs_tail", "mechanisms",
    "namespaces_view", "network_view", "on_startup", "processes", "remove", "remove_host_shm", "restart",
    "restore", "run_attack", "run_options", "security_view", "shell_argv", "short_duration", "shorten",
    "start", "steps_tail", "stop", "stop_traces", "strace_summary", "toggle_pause", "toggle_trace",
]
