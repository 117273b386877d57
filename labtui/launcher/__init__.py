"""The installed `labtui` command and its warm helper (optional: labtui works without them).

`launcher.c` (built by scripts/build-launcher) or `launch.py` is the command a user types; each
hands the command to the warm helper (`helper.py`) over a unix socket, or runs it the ordinary way
(labtui.cli) when no helper takes it. `trust.py` decides whom the helper serves, `stamp.py`
whether its code is still current, `spare.py` forks a cold `run`'s supervisor early; the
engine's one hook for all this is engine/prefork.py. docs/launcher.md explains the path and its figures.
Kept light: `python3 -SI labtui/launcher/launch.py` imports this package first.
"""
