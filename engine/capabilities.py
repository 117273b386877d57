"""Linux capabilities: names, docker's default set, --cap-add/--cap-drop, and setting them.

A container's root keeps only docker's 14 capabilities (REFERENCE, "Security defaults") in its
bounding, permitted and effective sets; inheritable and ambient are empty. The bounding set is
what matters across execve(2): for a root process (capabilities(7), "Capabilities and execution
of programs by root") the kernel computes P'(permitted) = P(inheritable) | P(bounding) and
P'(effective) = P'(permitted), so whatever is left in the bounding set is what the command gets.

Everything is done with the raw system calls (prctl(2) PR_CAPBSET_DROP, PR_CAP_AMBIENT and
capset(2) with _LINUX_CAPABILITY_VERSION_3), never by running capsh: the shell field of each
step only shows what a student would type to do the same by hand.
"""

from __future__ import annotations

import ctypes

from engine.errors import InvalidArgument
from engine.syscalls import _check, _libc  # the one libc handle and errno check

# <linux/capability.h>, in bit order.
CAP_NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
CAP_BITS = {name: bit for bit, name in enumerate(CAP_NAMES)}

# docker's default (moby oci/caps/defaults.go), REFERENCE "Security defaults".
DOCKER_DEFAULT = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
DOCKER_DEFAULT_MASK = 0x00000000A80425FB  # the CapEff docker containers show in /proc/PID/status

# <linux/capability.h>
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_capget = 125
SYS_capset = 126


def last_cap() -> int:
    """The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAP_NAMES) - 1


def all_caps() -> set[int]:
    return set(range(last_cap() + 1))


def cap_name(bit: int) -> str:
    return CAP_NAMES[bit] if bit < len(CAP_NAMES) else f"CAP_{bit}"


def normalize(name: str) -> str:
    """docker's spelling rules: case-insensitive, the CAP_ prefix optional, ALL for every one."""
    n = name.strip().upper()
    if n == "ALL":
        return "ALL"
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in CAP_BITS:
        raise InvalidArgument(f"unknown capability {name!r}: expected a name from capabilities(7) such as "
                              "NET_ADMIN or CAP_SYS_PTRACE, or ALL")
    return n


def normalize_list(names: list[str] | None) -> list[str]:
    out: list[str] = []
    for raw in names or []:
        for part in str(raw).split(","):  # docker also accepts --cap-add a,b
            if part.strip():
                n = normalize(part)
                if n not in out:
                    out.append(n)
    return out


def effective_set(cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                  privileged: bool = False) -> set[int]:
    """The container's capability set, with moby's rules (oci/caps TweakCapabilities):
    --cap-add ALL keeps everything but what is dropped; --cap-drop ALL keeps only what is added;
    otherwise the default set, minus the drops, plus the adds (an add wins over a drop)."""
    if privileged:
        return all_caps()
    adds = normalize_list(cap_add)
    drops = normalize_list(cap_drop)
    known = all_caps()
    if "ALL" in adds:
        caps = {b for b in known if cap_name(b) not in drops}
    elif "ALL" in drops:
        caps = {CAP_BITS[n] for n in adds}
    else:
        caps = {CAP_BITS[n] for n in DOCKER_DEFAULT if n not in drops}
        caps |= {CAP_BITS[n] for n in adds}
    return {b for b in caps if b in known}


def to_mask(caps: set[int] | list[int]) -> int:
    m = 0
    for b in caps:
        m |= 1 << b
    return m


def from_mask(mask: int) -> set[int]:
    return {b for b in range(64) if mask >> b & 1}


def decode(mask: int | str) -> list[str]:
    """A /proc/PID/status Cap* value (hex) -> capability names, lowercase as capsh prints them."""
    if isinstance(mask, str):
        mask = int(mask, 16)
    return [cap_name(b).lower() for b in sorted(from_mask(mask))]


def shell_list(caps: set[int] | list[int]) -> str:
    return ",".join(cap_name(b).lower() for b in sorted(caps))


# ---- the kernel side ---------------------------------------------------------------------------

class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]




def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) masks of a process (0: the caller)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_Data * 2)()
    _check(_libc.syscall(SYS_capget, ctypes.byref(hdr), data))
    eff = data[0].effective | data[1].effective << 32
    prm = data[0].permitted | data[1].permitted << 32
    inh = data[0].inheritable | data[1].inheritable << 32
    return eff, prm, inh


def capset(effective: int, permitted: int, inheritable: int = 0) -> None:
    """capset(2) on the caller, version 3 (two 32-bit words per set)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in (0, 1):
        data[i].effective = effective >> (32 * i) & 0xFFFFFFFF
        data[i].permitted = permitted >> (32 * i) & 0xFFFFFFFF
        data[i].inheritable = inheritable >> (32 * i) & 0xFFFFFFFF
    _check(_libc.syscall(SYS_capset, ctypes.byref(hdr), data))


def bounding_has(bit: int) -> bool:
    return _check(_libc.prctl(PR_CAPBSET_READ, bit, 0, 0, 0)) == 1


def current_bounding() -> set[int]:
    return {b for b in range(last_cap() + 1) if bounding_has(b)}


def drop_bounding(bits: list[int]) -> None:
    for b in bits:
        _check(_libc.prctl(PR_CAPBSET_DROP, b, 0, 0, 0))


def clear_ambient() -> None:
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))


def apply(rec, caps: set[int]) -> None:
    """Bounding set first (needs CAP_SETPCAP, which capset may drop), then ambient, then capset.

    Capabilities the runtime itself does not hold (here: root on this host lacks CAP_SYS_MODULE)
    cannot be given; they are left out and named in the step's value.
    """
    have = current_bounding()
    keep = caps & have
    missing = caps - have
    drop = sorted(have - keep)
    value = f"keep {len(keep)}: {shell_list(keep) or '(none)'}"
    if missing:
        value += f"; unavailable (not in the runtime's own bounding set): {shell_list(missing)}"
    with rec.step("capability", "prctl PR_CAPBSET_DROP", target="bounding", value=value,
                  shell=f"capsh --drop={shell_list(drop)} --" if drop else "# nothing to drop",
                  dropped=[cap_name(b).lower() for b in drop]):
        drop_bounding(drop)
    with rec.step("capability", "prctl PR_CAP_AMBIENT_CLEAR_ALL", target="ambient", value="(empty)",
                  shell="setpriv --ambient-caps=-all"):
        clear_ambient()
    mask = to_mask(keep)
    with rec.step("capability", "capset", target="effective,permitted,inheritable",
                  value=f"eff=prm={mask:#018x} inh=0",
                  shell=f'capsh --caps="{shell_list(keep)}=ep" --' if keep else 'capsh --caps="=" --'):
        capset(mask, mask, 0)


# ---- reading a process ----------------------------------------------------------------------------

STATUS_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}


def read_status(pid: int | str) -> dict[str, str]:
    from engine import procfs

    return {k: v for k, v in procfs.status(pid).items() if k in STATUS_KEYS}


def describe(pid: int | str) -> dict:
    """What inspect shows about a process's privileges, decoded from /proc/PID/status."""
    st = read_status(pid)
    out: dict = {}
    for key, name in (("CapInh", "inheritable"), ("CapPrm", "permitted"), ("CapEff", "effective"),
                      ("CapBnd", "bounding"), ("CapAmb", "ambient")):
        if key in st:
            out[name] = {"mask": "0x" + st[key], "names": decode(st[key])}
    if "NoNewPrivs" in st:
        out["no_new_privs"] = st["NoNewPrivs"] == "1"
    if "Seccomp" in st:
        mode = int(st["Seccomp"])
        out["seccomp"] = {"mode": mode, "name": SECCOMP_MODES.get(mode, str(mode)),
                          "filters": int(st.get("Seccomp_filters", "0") or 0)}
    return out
