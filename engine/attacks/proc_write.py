"""Writing /proc/sysrq-trigger and /proc/sys."""

from __future__ import annotations

import os

from engine.attacks.base import Attack, Lab, Outcome, step_text

CORE_PATTERN = "/proc/sys/kernel/core_pattern"


class ProcWrite(Attack):
    name = "proc_write"
    title = "write /proc/sysrq-trigger and /proc/sys"
    technique = ("write the host-global kernel.core_pattern sysctl (the classic core_pattern escape points it at a "
                 "program the host kernel runs as root on the next crash; the lab writes back the value that "
                 "is already there) and press sysrq 'h' (which only prints help to the kernel log) when "
                 "/proc/sysrq-trigger exists.")
    weak = "--security-opt systempaths=unconfined (no masked or read-only paths in /proc)"
    stops_it = ("/proc/sys and /proc/sysrq-trigger are bind-mounted onto themselves and remounted read-only: "
                "write(2) fails with EROFS before any sysctl handler runs")

    def config(self, lab: Lab, profile: str) -> dict:
        return {"security": {"systempaths": "unconfined"}} if profile == "weak" else {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        with open(CORE_PATTERN) as f:
            before = f.read()
        script = lab.script(f"""
if [ -e /proc/sysrq-trigger ]; then
  if {{ echo h > /proc/sysrq-trigger; }} 2>/tmp/err; then echo "WROTE: sysrq h (help to the kernel log)"
  else echo "BLOCKED: sysrq-trigger: $(cat /tmp/err)"; fi
else
  echo "INFO: /proc/sysrq-trigger does not exist (kernel built without CONFIG_MAGIC_SYSRQ)"
fi
v=$(cat {CORE_PATTERN})
if {{ printf '%s\\n' "$v" > {CORE_PATTERN}; }} 2>/tmp/err; then echo "WROTE: kernel.core_pattern (the same value: $v)"
else echo "BLOCKED: write {CORE_PATTERN}: $(cat /tmp/err)"; fi
""")
        run = lab.run(["sh", script], extra=self.config(lab, profile))
        with open(CORE_PATTERN) as f:
            after = f.read()
        if after != before:  # never leave the host changed
            fd = os.open(CORE_PATTERN, os.O_WRONLY)
            os.write(fd, before.encode())
            os.close(fd)
        wrote = run.lines("WROTE:")
        if wrote:
            return Outcome(True, "write(2) to host-global kernel files succeeded from the container: "
                           + "; ".join(wrote), details={"output": run.output, "unchanged": after == before})
        ro = run.step("mount", "remount ro", contains="/proc/sys")
        return Outcome(False, "; ".join(run.lines("BLOCKED:") + run.lines("INFO:")), step_text(ro),
                       {"output": run.output})
