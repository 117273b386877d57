"""Strategies for command lines: labtui's real flag names with plausible, borderline and
garbage values. Names of containers, networks and images start with "zzfz" (never a hex
container ID prefix, never another test's or a real install's object), so a fuzzed `rm -f`
can only ever miss."""

from __future__ import annotations

import os

from hypothesis import strategies as st


def examples(n: int) -> int:
    """A test's example count; LABTUI_FUZZ_SCALE=K runs K times as many (a long local hunt)."""
    return n * int(os.environ.get("LABTUI_FUZZ_SCALE", "1"))


garbage = st.one_of(st.text(max_size=12), st.sampled_from(["", "-", "--", "-1", "0", "1e400", "nan", "inf", "\x00",
                                                           " ", "=", ":", "::", ",", "/", "..", "%s", "é", "9" * 30]))


def values(*plausible: str):
    """Mostly the flag's plausible and borderline values, sometimes garbage."""
    return st.one_of(st.sampled_from(plausible), st.sampled_from(plausible), garbage)


names = st.from_regex(r"zzfz[a-zA-Z0-9_.-]{0,8}", fullmatch=True)
ref = st.one_of(names, names, garbage.map(lambda g: "zzfz" + g))
# Host side of fuzzed volumes: create makes a missing host directory (as docker does), so every
# valid one is made here, and removed by the tests that create (test_fuzz_create_root.py).
VOL = "/var/tmp/zzfz-volumes"

SIZES = values("64m", "1g", "512k", "1024", "0", "-1", "1.5g", "6m", "99999999999999g", "64M", "1e3", "4b", "m")
INTS = values("0", "1", "-1", "2", "10", "1000", "1001", "99", "100", "-20", "19", "20", "2147483648", "1.5", "0x10")
DURATIONS = values("30s", "1m30s", "500ms", "0s", "0", "-1s", "1h", "10", "1d", "1m-", "ms", "99999999999h")

# Every run/create flag (labtui/common/runopts.py): (flag, value strategy or None for a switch)
RUN_FLAGS: list[tuple[str, object]] = [
    ("-i", None), ("-t", None), ("--rm", None), ("--read-only", None), ("--gate", None), ("--privileged", None),
    ("--strace", None), ("--no-healthcheck", None),
    ("--name", st.one_of(names, garbage)),
    ("-e", values("A=1", "A=", "=x", "A", "PATH=/bin", "A=b=c", "1A=x", "A B=1")),
    ("-w", values("/", "/tmp", "rel", "/a/../b")),
    ("--hostname", values("h", "a.b", "-x", "a" * 70, "a_b", "a..b")),
    ("-v", values(f"{VOL}/x:/x", f"{VOL}/x:/x:ro", f"{VOL}/y:/x:rw", f"{VOL}/x:/x:zz", "rel:/x", f"{VOL}/a:/",
                  VOL, f"{VOL}:rel", ":/x", f"{VOL}/a:/b:ro:extra", f"{VOL}/../{VOL}:/x")),
    ("--tmpfs", values("/tmp", "/", "rel", "/run:size=1m")),
    ("--entrypoint", values("", "/bin/sh", "sh -c")),
    ("-m", SIZES), ("--memory-swap", SIZES), ("--cpus", values("0.5", "2", "0", "-1", "1e400", "nan", "inf", "0.001")),
    ("-c", INTS), ("--cpuset-cpus", values("0", "0-1", "1,0", "5-2", "0-99999", "a", "0,,1", "-1")),
    ("--pids-limit", INTS), ("--blkio-weight", INTS),
    ("--nice", INTS), ("--sched-policy", values("other", "batch", "idle", "fifo", "rr")), ("--sched-priority", INTS),
    # --network never "bridge" here: validating it makes the default bridge (tests/fuzz/test_fuzz_network.py
    # fuzzes networks).
    ("--network", st.one_of(st.sampled_from(["none", "host"]), names)),
    ("--ip", values("10.0.0.2", "300.1.1.1", "::1", "10.0.0")),
    ("--network-alias", values("web", "", "a b")),
    ("-p", values("8080:80", "127.0.0.1:8080:80/udp", "80", "99999:1", "a:b", "::80", ":80", "80/sctp", "0:0",
                  "1-2:3-4", "65535:65535/tcp")),
    ("--cap-add", values("NET_ADMIN", "CAP_SYS_PTRACE", "ALL", "all", "NOPE", "")),
    ("--cap-drop", values("NET_RAW", "ALL", "CAP_NOPE")),
    ("--security-opt", values("no-new-privileges", "no-new-privileges=true", "no-new-privileges=maybe",
                              "seccomp=unconfined", "seccomp=/nonexistent.json", "seccomp=/etc/hostname",
                              "systempaths=unconfined", "apparmor=x", "seccomp", "label:x")),
    ("--userns", values("host", "private")),
    ("--device", values("/dev/null", "/dev/null:/dev/x:rwm", "/dev/null:/dev/x:q", "/dev/nonexistent",
                        "/etc/passwd", "/dev/null:rel", "/dev/zero::r")),
    ("--restart", values("no", "always", "on-failure", "on-failure:3", "on-failure:-1", "unless-stopped",
                         "on-failure:x", "always:2")),
    ("--health-cmd", values("true", "", "exit 1")),
    ("--health-interval", DURATIONS), ("--health-timeout", DURATIONS), ("--health-retries", INTS),
    ("--health-start-period", DURATIONS), ("--health-on-failure", values("none", "restart")),
]
LIMIT_FLAGS = [f for f in RUN_FLAGS if f[0] in ("-m", "--memory-swap", "--cpus", "-c", "--cpuset-cpus",
                                                 "--pids-limit", "--blkio-weight")]


def _flag(table: list[tuple[str, object]]):
    """One flag: `--flag value`, or `--flag=value` (argparse takes both)."""
    return st.tuples(st.sampled_from(table), st.booleans()).flatmap(
        lambda t: st.just([t[0][0]]) if t[0][1] is None else t[0][1].map(
            lambda v, f=t[0][0], joined=t[1]: [f"{f}={v}"] if joined and f.startswith("--") else [f, v]))


def flags(table: list[tuple[str, object]], max_size: int = 6):
    """A few flags of the table with their values; now and then a garbage word among them (the
    first word that is not a flag is the image: what follows is the command)."""
    if not table:  # a command without options: garbage words only
        return st.lists(garbage.map(lambda g: [g]), max_size=1).map(lambda parts: [w for p in parts for w in p])
    return st.lists(st.one_of(*[_flag(table)] * 7, garbage.map(lambda g: [g])),
                    max_size=max_size).map(lambda parts: [w for p in parts for w in p])


def run_argv(image: str | None = None):
    """`run`'s arguments: flags, the image, a command."""
    img = st.just(image) if image else st.one_of(names, garbage)
    return st.tuples(flags(RUN_FLAGS), img, st.lists(garbage, max_size=2)).map(lambda t: t[0] + [t[1]] + t[2])
