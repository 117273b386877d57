#!/bin/sh
# The cgroup v2 lane, inside the VM (scripts/vm-test boots it with virtme-ng and runs this as root).
#
#   guest.sh RESULTS_DIR [pytest args...]
#
# The guest's root is the host's filesystem over 9p, read-only except for virtme-ng's overlays;
# RESULTS_DIR is shared read-write with the host. Writes there: booted (kernel and uptime, the
# host's proof that the VM came up), pytest.log, junit.xml and rc (pytest's exit code).
results=$1
shift
here=$(cd "$(dirname "$0")/../.." && pwd)
venv=${LABTUI_VENV:-/opt/labtui-venv}

echo "kernel $(uname -r) uptime $(cut -d' ' -f1 /proc/uptime)" > "$results/booted"

# Containers' upper dirs must not live on the shared 9p root: LABTUI_ROOT goes on a tmpfs of the
# VM's own. tests/conftest.py makes it under /var/tmp, so that is where the tmpfs goes.
mount -t tmpfs -o size=1g,mode=1777 labtui-vm /var/tmp || { echo 125 > "$results/rc"; exit 1; }
mkdir -p /var/tmp/labtui
export LABTUI_ROOT=/var/tmp/labtui LABTUI_CGROUP_PARENT=labtui-test LABTUI_VM_LANE=1 \
    HOME=/root PATH="$venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bytecode on the tmpfs too: the interpreter then reads its .pyc files from the VM's memory
# instead of over 9p, which halves every CLI call under the emulated CPU (nothing is written
# to the shared tree).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/var/tmp/pycache

cd "$here" || exit 1
# -v: each test's name is written when it starts, so a lane that stops mid-way says where; and
# every 10 s, what labtui's processes are doing (progress.log: scripts/vm-test shows its end
# when the guest stops making progress).
( while :; do
    { echo "== uptime $(cut -d' ' -f1 /proc/uptime)"
      ps -eo pid,ppid,stat,wchan:30,etime,args | grep -E 'labtui|pytest|busybox' | grep -v grep
    } >> "$results/progress.log" 2>&1
    sleep 10
  done ) &
{
    echo "== $(uname -r): $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || echo 'no cgroup2 root')"
    "$venv/bin/python" -m pytest -v -rs -p no:cacheprovider --junitxml="$results/junit.xml" \
        -o junit_family=xunit2 "$@" tests/vm
    echo $? > "$results/rc"
} 2>&1 | tee "$results/pytest.log"
sync
