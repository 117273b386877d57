"""Probes of what the runtime recorded: the step stream and the event stream."""

from __future__ import annotations
