"""The attack lab: real container escapes, each run under a weakened and under the default profile.

    from engine import attacks
    attacks.names()                      # the catalogue
    attacks.run("shocker", "weak")       # -> {"attack", "profile", "escaped", "evidence", "mitigation", ...}

One module per attack; catalogue.py lists them in teaching order; runner.py runs one.
"""

from __future__ import annotations

from engine.attacks.base import PROFILES, Attack
from engine.attacks.catalogue import catalogue, get, names
from engine.attacks.runner import run

__all__ = ["PROFILES", "Attack", "catalogue", "get", "names", "run"]
