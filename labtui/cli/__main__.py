"""`python -m labtui.cli ARGS`: the command line, without the launcher."""

from labtui.cli.main import entry

entry()
