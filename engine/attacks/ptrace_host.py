"""ptrace of a process outside the container."""

from __future__ import annotations

import subprocess

from engine.attacks.base import Attack, Lab, Outcome, denial_text, step_text


class PtraceHost(Attack):
    name = "ptrace"
    title = "ptrace a host process"
    technique = ("attach with ptrace(2) to a sacrificial process the lab starts on the host (it holds a secret "
                 "in memory, read from its stdin so it is in no /proc file) and read the secret with "
                 "PTRACE_PEEKDATA, then detach.")
    weak = "--pid=host --cap-add SYS_PTRACE (config pid_mode=host)"
    stops_it = ("the container's own PID namespace: host processes have no PID inside it (ESRCH); without "
                "CAP_SYS_PTRACE the kernel's ptrace_may_access() refuses a target whose capabilities are not a "
                "subset of the tracer's (commoncap), and the runtime's own processes are non-dumpable")

    def config(self, lab: Lab, profile: str) -> dict:
        if profile == "weak":
            return {"pid_mode": "host", "security": {"cap_add": ["CAP_SYS_PTRACE"]}}
        return {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        from engine.attacks import helpers

        victim = subprocess.Popen([helpers.build("victim"), "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        lab.procs.append(victim)
        victim.stdin.write(lab.secret + "\n")
        victim.stdin.close()
        pid, addr, length = victim.stdout.readline().split()
        helper = lab.helper("ptrace_peek")
        run = lab.run([helper, pid, addr, length], extra=self.config(lab, profile))
        alive = victim.poll() is None
        secret = run.first("SECRET:")
        if secret == lab.secret:
            return Outcome(True, f"the container attached to host pid {pid} and read {secret!r} from its memory "
                                 f"at {addr} (the victim is {'still running' if alive else 'gone'})",
                           details={"output": run.output, "victim_pid": int(pid)})
        den = [d for d in run.denials if d.get("syscall") == "ptrace"]
        mit = denial_text(den[0]) if den else step_text(run.step("namespace", "clone", contains="CLONE_NEWPID"))
        return Outcome(False, run.first("BLOCKED:") or "nothing read", mit, {"output": run.output})
