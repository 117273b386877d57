"""Run a blocking engine call off the UI thread and report back with an ActionDone message.

Lifecycle actions (stop waits up to 10 s, a gated start waits for every step to be released)
run in daemon threads rather than Textual's thread workers: those live in the event loop's
executor, which is joined when the app exits, so a pending stop would hold `q` hostage.
Polling and stream following, which end within a tick when cancelled, stay Textual workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from textual.message_pump import MessagePump

from labtui.tui import adapter
from labtui.tui.messages import ActionDone


def run_in_background(node: MessagePump, action: str, container: str, fn: Callable[[], object]) -> None:
    """Call fn() in a daemon thread; post ActionDone(ok, message, result) to node when it returns."""

    def target() -> None:
        try:
            result = fn()
            msg = ActionDone(action, container, True, result=result)
        except adapter.ERRORS as e:
            msg = ActionDone(action, container, False, str(e) or type(e).__name__)
        except Exception as e:  # noqa: BLE001 - not hidden: a bug is shown with its type, where an
            # uncaught exception in a plain thread would only reach stderr, under the app's screen
            msg = ActionDone(action, container, False, f"{type(e).__name__}: {e}")
        try:
            node.post_message(msg)
        except RuntimeError:
            pass  # the app closed meanwhile

    threading.Thread(target=target, name=f"labtui-{action}", daemon=True).start()
