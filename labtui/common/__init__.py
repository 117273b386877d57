"""What the command line (labtui.cli) and the app (labtui.tui) share, and nothing else.

The two programs are independent of each other; the code both need lives here so that neither
imports the other. Today that is `runopts.py`: the options of `labtui run`/`labtui create` and
how they become a container's config, parsed by the CLI's `run` and by the app's run form.
Imports only the standard library and `engine`.
"""
