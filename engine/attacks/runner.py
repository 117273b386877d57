"""Run one attack under one profile and report it as JSON-able data."""

from __future__ import annotations

import time

from engine.attacks.base import PROFILES, Lab
from engine.attacks.catalogue import get
from engine.errors import InvalidArgument


def run(name: str, profile: str) -> dict:
    """{"attack", "profile", "escaped", "evidence", "mitigation", "weakening", "skipped", "output", ...}.

    escaped is True when the payload's effect was verified from the host (a marker, a secret, a
    changed file), False when it failed, None when the attack was skipped on this host.
    """
    from engine import api

    if profile not in PROFILES:
        raise InvalidArgument(f"invalid --profile {profile!r}: weak or default")
    api.require_root()
    attack = get(name)
    result = {"attack": attack.name, "title": attack.title, "cve": attack.cve or None, "profile": profile,
              "weakening": attack.weak if profile == "weak" else None, "technique": attack.technique}
    lab = Lab(attack.name, profile)
    t0 = time.monotonic()
    try:
        why = attack.skip_reason(lab)
        if why:
            result.update(escaped=None, skipped=True, note=why, evidence="", mitigation="")
            return result
        out = attack.execute(lab, profile)
        result.update(escaped=out.escaped, skipped=False, evidence=out.evidence,
                      mitigation=out.mitigation if not out.escaped else "",
                      default_mitigation=attack.stops_it, output=out.details.get("output", ""))
        return result
    finally:
        try:
            attack.host_cleanup(lab)
        finally:
            lab.cleanup()
        result["duration_s"] = round(time.monotonic() - t0, 2)
