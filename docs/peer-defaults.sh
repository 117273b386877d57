#!/usr/bin/env bash
# What each runtime's default container gets, read from inside it: capabilities, no_new_privs,
# seccomp, user namespace, cgroup namespace, and what is mounted over /proc and /sys (masked and
# read-only paths). docs/COMPARATIVE_ANALYSIS.md quotes its output.
#
#   sudo docs/peer-defaults.sh
#
# labtui runs from this tree. podman (if installed) runs with a store of its own in a temporary
# directory (nothing of another podman user's is touched), on labtui's busybox layer imported with
# `podman import`, with runc (crun refuses this cgroup-hybrid host) and with two rlimits lowered:
# podman raises RLIMIT_NOFILE and RLIMIT_NPROC by default, which root here may not (no
# CAP_SYS_RESOURCE), as bench/bench_stats.py does. docker runs only if a daemon answers. LXC (if
# installed) makes a container from the Debian package's busybox template in a container path of its
# own and runs the probe with lxc-execute, without a network; its template's settings are printed too.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${LABTUI_PYTHON:-/opt/labtui-venv/bin/python}"
probe='grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status
echo "uid_map: $(cat /proc/self/uid_map | tr -s " ")"
echo "cgroupns: $(readlink /proc/self/ns/cgroup)"
awk "\$5 ~ /^\/(proc|sys)\// {print \"mount:\", \$5, \$9, \$6}" /proc/self/mountinfo'

work="$(mktemp -d /var/tmp/peer-defaults.XXXXXX)"
cleanup() {
    if [ -n "${pm:-}" ]; then $pm system reset -f >/dev/null 2>&1 || true; fi
    # labtui keeps its cgroup parent between containers: this run's goes, once the --rm
    # container's supervisor has removed the container's own cgroups (just after `run` returned).
    (cd "$here" && "$py" -c 'import glob, os, time
from engine import cgroups
from engine.steps import null_recorder
pattern = "/sys/fs/cgroup/*/" + os.environ["LABTUI_CGROUP_PARENT"] + "/*/"
deadline = time.monotonic() + 10
while glob.glob(pattern) and time.monotonic() < deadline:
    time.sleep(0.1)
cgroups.remove_empty_parents(null_recorder())') || true
    rm -rf "$work"
}
trap cleanup EXIT
export LABTUI_ROOT="$work/labtui" LABTUI_HELPER=0 LABTUI_CGROUP_PARENT="peer-defaults-$$"
export LABTUI_DEFAULT_BRIDGE="pd$$"

echo "== host: $(uname -r); host cgroupns: $(readlink /proc/self/ns/cgroup)"
echo "== labtui ($(git -C "$here" rev-parse --short HEAD))"
(cd "$here" && "$py" -m labtui.cli run --rm busybox sh -c "$probe")
layer="$(ls "$LABTUI_ROOT/lib/layers" | head -1)"

if command -v podman >/dev/null; then
    echo "== podman $(podman --version | awk '{print $3}') (runc $(runc --version | awk 'NR==1{print $3}'))"
    pm="podman --root $work/podman/root --runroot $work/podman/run --cgroup-manager cgroupfs --events-backend file"
    tar -C "$LABTUI_ROOT/lib/layers/$layer" -c . | $pm import - peer-defaults-busybox >/dev/null 2>&1
    $pm run --rm --runtime runc --network none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        peer-defaults-busybox sh -c "$probe"
    echo "podman containers.conf default_capabilities: $(sed -n '/^default_capabilities/,/^]/p' \
        /usr/share/containers/containers.conf | grep -o '"[A-Z_]*"' | tr -d '"' | paste -sd, | sed 's/,/, /g')"
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "== docker $(docker version --format '{{.Server.Version}}')"
    tar -C "$LABTUI_ROOT/lib/layers/$layer" -c . | docker import - peer-defaults-busybox >/dev/null
    docker run --rm --network none peer-defaults-busybox sh -c "$probe"
    docker rmi peer-defaults-busybox >/dev/null
else
    echo "== docker: no daemon answers here (docker info failed): nothing to read"
fi

if command -v lxc-create >/dev/null; then
    echo "== lxc $(lxc-create --version) (busybox template, lxc-execute, no network)"
    lxc-create -P "$work/lxc" -n peer-defaults -t busybox >"$work/lxc-create.log" 2>&1
    lxc-execute -P "$work/lxc" -n peer-defaults -s lxc.net.0.type=empty -- sh -c "$probe"
    lxc-destroy -P "$work/lxc" -n peer-defaults >/dev/null 2>&1 || true
fi
tpl=/usr/share/lxc/templates/lxc-busybox
if [ ! -e "$tpl" ]; then
    echo "== lxc: not installed; reading the Debian package instead"
    (cd "$work" && apt-get download -q lxc liblxc-common >/dev/null 2>&1 \
        && for d in ./*.deb; do dpkg-deb -x "$d" x; done) || true
    tpl="$work/x$tpl"
fi
if [ -e "$tpl" ]; then
    echo "== lxc busybox template ($tpl)"
    grep -E '^lxc\.(cap|mount\.auto|seccomp|include|apparmor|cgroup)' "$tpl" || true
    echo "lines naming common.conf: $(grep -c 'common.conf' "$tpl" || true)"
fi
