"""labtui's three programs, each a package of its own, all on top of the runtime in `engine/`:

- `labtui.cli`: the command line (`labtui run ...`), what every `labtui` command ends up running.
- `labtui.tui`: the Textual app (`labtui` with no command; `labtui serve` for a browser).
- `labtui.launcher`: the installed `labtui` command (a C or Python launcher) and its warm helper,
  which runs CLI commands in forked workers so that a command need not start Python.

`labtui.common` holds what the CLI and the app share (the run options). The layering is declared
in pyproject.toml ([tool.importlinter]) and checked by tests/unit/test_layers.py.
"""
