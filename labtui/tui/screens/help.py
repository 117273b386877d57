"""The help screen (?): keys of every screen and where each panel's data comes from."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# labtui

A real container runtime you can watch. Every panel reads the kernel (/proc, /sys/fs/cgroup) or
the engine's own records; nothing is simulated. Closing the app never stops a container.

## Everywhere
| key | |
|---|---|
| `?` | this help |
| `a` | alerts (OOM kills, crashes, restarts, health, limit alerts) |
| `t` | attack lab |
| `l` | lessons: the picker (`enter` starts or resumes one, `w` its walkthrough) |
| `ctrl+p` | command palette: every action, and "open <container>" |
| `q` | quit (containers keep running) |

## Dashboard
| key | |
|---|---|
| `enter` | open the selected container |
| `n` | run a new container (form) |
| `S` / `s` | start / stop (SIGTERM, then SIGKILL after 10 s) |
| `k` | kill (SIGKILL) |
| `p` | pause / resume (cgroup freezer) |
| `R` | restart |
| `d` | remove (asks first; kills a running container) |
| `x` | shell inside (`labtui exec -it ID sh`) |
| `T` | strace on / off for every process of the container (host-side; see the strace tab) |
| `c` / `C` | checkpoint / restore (CRIU) |

## Container screen
| key | |
|---|---|
| `1`..`0` | Steps, Namespaces, cgroups, IPC, Network, Security, Processes, Logs, Timeline, strace |
| `escape` | back to the dashboard |
| `S` `s` `k` | start, stop, kill this container |
| `ctrl+end` | Steps: jump to the last step; new steps are followed while you stay there |
| `m` | Steps: next mechanism filter |
| `n` / `N` | Steps: let the next gated step (10 steps) go, for a container run with the step gate |
| `h` / `c` / `x` | IPC: create a shm segment on the host / in the container; drop the host ones |

## Lesson screen and walkthrough
| key | |
|---|---|
| `h` | lesson: the next hint (more appear by themselves after failed attempts) |
| `x` / `c` | lesson: a shell beside the app (tmux) / check the task now (it also checks by itself) |
| `space` | walkthrough: let exactly the step on screen go |
| `e` / `→` / `←` / `r` | walkthrough: end of task / next task / previous task (rebuilt) / this task again |

The mouse works too: click tabs, rows and buttons; scroll with the wheel.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
