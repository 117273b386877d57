"""The attack lab screen: the catalogue of engine.attacks and running one attack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AttackInfo:
    name: str
    title: str = ""
    cve: str = ""
    technique: str = ""
    weak: str = ""
    stops_it: str = ""


def attacks() -> list[AttackInfo]:
    """The attack lab's catalogue."""
    from engine import attacks as lab  # ~30 ms of imports, paid when the lab screen opens

    out = []
    for a in lab.catalogue():
        info = a.info()
        out.append(AttackInfo(str(info.get("name", "?")), str(info.get("title") or ""), str(info.get("cve") or ""),
                              str(info.get("technique") or ""), str(info.get("weak") or ""),
                              str(info.get("default_mitigation") or "")))
    return out


def run_attack(name: str, profile: str) -> dict:
    """Run one attack under "weak" or "default" (real containers; takes seconds)."""
    from engine import attacks as lab

    return dict(lab.run(name, profile))
