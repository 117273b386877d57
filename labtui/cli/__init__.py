"""The command line: `labtui run|ps|exec|...`, docker's verbs over engine.api.

Called by the installed `labtui` command (labtui.launcher: in a warm helper's worker, or in the
launcher's own process when no helper runs), by `python -m labtui.cli`, and by the engine's exec
entry point's users only through the subprocess it documents. `main.py` builds the parser and
dispatches; each other module adds one group of commands and run options (lifecycle, resources,
network, security, checkpoint, living); `attach_client.py` is the terminal side of `run -it`.
Kept light: importing this package imports nothing.
"""
