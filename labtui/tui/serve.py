"""`labtui serve`: the same app in a web browser, through textual-serve.

textual-serve runs one `python -m labtui.tui.app` per browser tab and relays its terminal over a
websocket; each tab is a full labtui reading the same state files (LABTUI_ROOT is inherited).
Listen on loopback unless you mean to share it: the app can run and remove containers as root.
"""

from __future__ import annotations

import argparse
import shlex
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def app_command() -> str:
    return f"{shlex.quote(sys.executable)} -m labtui.tui.app"


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the app at http://host:port/ until interrupted."""
    from textual_serve.server import Server

    Server(app_command(), host=host, port=port, title="labtui").serve()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="labtui serve", description="Serve the labtui app to a web browser.")
    ap.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"labtui: serving on http://{args.host}:{args.port}/ (Ctrl+C stops)", file=sys.stderr)
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
