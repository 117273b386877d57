"""The Textual app: `sudo labtui` with no command, or `labtui serve` for a browser.

`app.py` is the App (thin); `screens/` one module per screen; `widgets/` the panels; `adapter/`
the app's only view of the runtime, one module per panel's data (plain data from engine.api and
the engine's kernel readers, no Textual imports; the run form's options come from labtui.common,
never from the CLI); `messages.py` what background workers post to the screens; `serve.py` the
browser mode (textual-serve). Started by labtui.cli.main.open_app and by `python -m labtui.tui.app`.
"""
