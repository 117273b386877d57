"""Resource limits: docker's options, parsed and checked before anything is created.

The ranges are the kernel's (or docker's, where docker is stricter), so a refusal here names the
option and the allowed range instead of surfacing later as an EINVAL from a cgroup file.
"""

from __future__ import annotations

import os
import re

from engine.errors import InvalidArgument
from engine.record import asdict, dataclass, fields, replace

MiB = 1024 * 1024
MIN_MEMORY = 6 * MiB  # docker: "Minimum memory limit allowed is 6MB"
CPU_PERIOD_US = 100_000  # docker's and the kernel's default CFS period (100 ms)
MIN_CPU_QUOTA_US = 1_000  # kernel minimum for cfs_quota_us / cpu.max (1 ms)
MIN_SHARES, MAX_SHARES = 2, 262_144  # kernel/sched: MIN_SHARES 2, MAX_SHARES 1 << 18
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000
ONLINE_CPUS = "/sys/devices/system/cpu/online"

OPTION = {
    "memory": "--memory",
    "memory_swap": "--memory-swap",
    "cpus": "--cpus",
    "cpu_shares": "--cpu-shares",
    "cpuset_cpus": "--cpuset-cpus",
    "pids_limit": "--pids-limit",
    "blkio_weight": "--blkio-weight",
}

# docker's go-units RAMInBytes: a number, an optional binary unit, an optional "i" and "b".
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_UNITS = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass
class Limits:
    """What docker run's resource options ask for; None means "not set"."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory+swap, -1 unlimited (docker's meaning)
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None  # -1 unlimited
    blkio_weight: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Limits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def is_empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def merged(self, other: Limits) -> Limits:
        """These limits with every field ``other`` sets replaced (docker update semantics)."""
        return replace(self, **{k: v for k, v in asdict(other).items() if v is not None})

    def swap_total(self) -> int | None:
        """memory+swap to enforce: --memory-swap, else docker's default of twice --memory."""
        if self.memory_swap is not None:
            return self.memory_swap
        # docker daemon (adaptContainerSettings): "By default, MemorySwap is set to twice the
        # size of Memory."
        return 2 * self.memory if self.memory is not None else None


def _bad(option: str, value: object, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid value {str(value)!r} for {option}: {why}")


def parse_size(text: str | int, option: str = "--memory") -> int:
    """Bytes from docker's size syntax: 1024, 512k, 64m, 64mb, 1g, 1.5g (binary units)."""
    if isinstance(text, bool):
        raise _bad(option, text, "expected a size")
    if isinstance(text, int):
        n = text
    else:
        m = _SIZE_RE.match(text.strip())
        if not m:
            raise _bad(option, text, "expected a positive number with an optional unit "
                       "b, k, m or g (e.g. 64m, 1g, 512k, 1024)")
        from decimal import Decimal  # exact "1.5g"; imported only when a size is given

        n = int(Decimal(m.group(1)) * _UNITS[m.group(2).lower() if m.group(2) else None])
    if n <= 0:
        raise _bad(option, text, "must be greater than 0")
    return n


def parse_memory_swap(text: str | int, option: str = "--memory-swap") -> int:
    """--memory-swap: a size, or -1 for unlimited swap."""
    if str(text).strip() == "-1":
        return -1
    return parse_size(text, option)


def parse_cpus(text: str | float, option: str = "--cpus") -> float:
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(str(text).strip())
    except InvalidOperation:
        raise _bad(option, text, "expected a number of CPUs such as 0.5 or 2") from None
    if not d.is_finite() or d <= 0:
        raise _bad(option, text, "must be a number greater than 0")
    if d.as_tuple().exponent < -9:  # type: ignore[operator]
        raise _bad(option, text, "too precise (docker keeps 9 decimal places)")
    return float(d)


def parse_int(text: str | int, option: str) -> int:
    if isinstance(text, bool):
        raise _bad(option, text, "expected an integer")
    try:
        return int(str(text).strip())
    except ValueError:
        raise _bad(option, text, "expected an integer") from None


def limits_from_options(
    *,
    memory: str | int | None = None,
    memory_swap: str | int | None = None,
    cpus: str | float | None = None,
    cpu_shares: str | int | None = None,
    cpuset_cpus: str | None = None,
    pids_limit: str | int | None = None,
    blkio_weight: str | int | None = None,
) -> Limits:
    """Parse docker-style option strings into Limits (not yet validated against the host)."""
    return Limits(
        memory=None if memory is None else parse_size(memory, OPTION["memory"]),
        memory_swap=None if memory_swap is None else parse_memory_swap(memory_swap),
        cpus=None if cpus is None else parse_cpus(cpus),
        cpu_shares=None if cpu_shares is None else parse_int(cpu_shares, OPTION["cpu_shares"]),
        cpuset_cpus=None if cpuset_cpus is None else str(cpuset_cpus).strip(),
        pids_limit=None if pids_limit is None else parse_int(pids_limit, OPTION["pids_limit"]),
        blkio_weight=None if blkio_weight is None else parse_int(blkio_weight, OPTION["blkio_weight"]),
    )


def parse_cpu_list(text: str, option: str = "--cpuset-cpus") -> list[int]:
    """CPU numbers from the kernel's list syntax "0-1,3" (cpuset(7) "List format")."""
    text = text.strip()
    if not _CPUSET_RE.match(text):
        raise _bad(option, text, 'expected a CPU list such as "0", "0-1" or "0-1,3"')
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if a > b:
            raise _bad(option, text, f"range {part} runs backwards")
        cpus.update(range(a, b + 1))
    return sorted(cpus)


def online_cpus(path: str = ONLINE_CPUS) -> list[int]:
    try:
        with open(path) as f:
            return parse_cpu_list(f.read(), path)
    except OSError:
        return list(range(os.cpu_count() or 1))


def validate(
    limits: Limits,
    *,
    cpu_count: int | None = None,
    online: list[int] | None = None,
) -> Limits:
    """Refuse limits the host or docker would refuse; returns ``limits`` unchanged."""
    _check_memory(limits)
    _check_cpus(limits, cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    _check_range(limits.cpu_shares, "cpu_shares", MIN_SHARES, MAX_SHARES)
    _check_range(limits.blkio_weight, "blkio_weight", MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT)
    if limits.pids_limit is not None and limits.pids_limit <= 0 and limits.pids_limit != -1:
        raise _bad(OPTION["pids_limit"], limits.pids_limit, "must be greater than 0 (or -1 for unlimited)")
    if limits.cpuset_cpus is not None:
        _check_cpuset(limits.cpuset_cpus, online if online is not None else online_cpus())
    return limits


def _check_range(value: int | None, name: str, lo: int, hi: int) -> None:
    if value is not None and not lo <= value <= hi:
        raise _bad(OPTION[name], value, f"must be in the range {lo} to {hi}")


def _check_memory(limits: Limits) -> None:
    mem, swap = limits.memory, limits.memory_swap
    if mem is not None and mem < MIN_MEMORY:
        raise _bad(OPTION["memory"], f"{mem} bytes", "the minimum memory limit allowed is 6MB (6291456 bytes)")
    if swap is not None and swap != -1:
        if swap <= 0:
            raise _bad(OPTION["memory_swap"], swap, "must be greater than 0 (or -1 for unlimited swap)")
        if mem is None:
            raise _bad(OPTION["memory_swap"], swap, "--memory-swap needs --memory: it is memory plus swap")
        if swap < mem:
            raise _bad(OPTION["memory_swap"], swap,
                       f"memory+swap must be at least --memory ({mem} bytes); it counts memory plus swap")


def _check_cpus(limits: Limits, ncpu: int) -> None:
    if limits.cpus is None:
        return
    if not (0 < limits.cpus <= ncpu) or cpu_quota(limits.cpus)[0] < MIN_CPU_QUOTA_US:
        raise _bad(OPTION["cpus"], limits.cpus,
                   f"the range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")


def _check_cpuset(text: str, online: list[int]) -> None:
    wanted = parse_cpu_list(text)
    missing = sorted(set(wanted) - set(online))
    if missing:
        avail = format_cpu_list(online)
        raise _bad(OPTION["cpuset_cpus"], text,
                   f"CPUs {format_cpu_list(missing)} are not online (available: {avail})")


def format_cpu_list(cpus: list[int]) -> str:
    """The kernel's list syntax for CPU numbers: [0, 1, 3] -> "0-1,3"."""
    runs: list[list[int]] = []
    for c in sorted(set(cpus)):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def cpu_quota(cpus: float, period: int = CPU_PERIOD_US) -> tuple[int, int]:
    """(quota_us, period_us) for --cpus: docker's NanoCPUs * period / 1e9, without float drift."""
    from decimal import Decimal

    return int((Decimal(str(cpus)) * period).to_integral_value()), period


def shares_to_weight(shares: int) -> int:
    """runc's (and kubernetes') cpu.shares [2..262144] -> cpu.weight [1..10000] linear map.

    weight = 1 + ((shares - 2) * 9999) / 262142, in integer math. 1024 maps to 39, not to
    v2's default 100; newer runc/crun (2025) switched to a log-quadratic formula for that
    reason, but this is the conversion docker has used since cgroup v2 support.
    """
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def shares_to_weight_formula(shares: int) -> str:
    return f"1 + (({shares} - 2) * 9999) / 262142 = {shares_to_weight(shares)}"


def blkio_to_io_weight(weight: int) -> int:
    """runc's blkio.weight [10..1000] -> io.weight [1..10000]: 1 + (w - 10) * 9999 / 990."""
    return 1 + ((weight - 10) * 9999) // 990
