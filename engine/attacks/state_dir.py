"""The runtime's own state directory mounted into a container (the docker.sock mistake)."""

from __future__ import annotations

import uuid

from engine import paths
from engine.attacks.base import Attack, Lab, Outcome


class StateDir(Attack):
    name = "state_dir"
    title = "runtime state directory mounted in"
    technique = ("with labtui's state directory bound in (like docker.sock), container root reads every other "
                 "container's config - here a secret in another container's environment - and could write new "
                 "container definitions (the lab only reads).")
    weak = "-v <labtui lib dir>:/labtui:ro"
    stops_it = ("nothing of the runtime is mounted into a container unless asked: the container's only binds "
                "are its volumes (each a recorded 'bind volume' step), and pivot_root hides the rest of the host")

    def execute(self, lab: Lab, profile: str) -> Outcome:
        from engine import api
        from engine.spec import RunOptions

        token = "LABTUI_DEMO_SECRET=" + uuid.uuid4().hex[:12]
        victim = api.create(RunOptions(image="busybox", command=["true"], env=[token], name=f"victim-{lab.id}"))
        lab.containers.append(victim.id)
        script = lab.script("""
if [ ! -d /labtui/containers ]; then echo "BLOCKED: no runtime state in this container (/labtui absent)"; exit 1; fi
for c in /labtui/containers/*/config.json; do
  s=$(grep -o 'LABTUI_DEMO_SECRET=[0-9a-f]*' "$c" 2>/dev/null) && echo "SECRET: $s (from $c)"
done
""")
        volumes = [f"{paths.lib_dir()}:/labtui:ro"] if profile == "weak" else []
        run = lab.run(["sh", script], volumes=volumes)
        got = [x.split(" (from")[0] for x in run.lines("SECRET:")]
        if token in got:
            return Outcome(True, f"the container read another container's environment: {token}",
                           details={"output": run.output})
        binds = [s.get("source") for s in run.steps if s.get("op") == "bind volume"]
        return Outcome(False, run.first("BLOCKED:") or "nothing found",
                       f"the container's only bind volumes (recorded 'bind volume' steps): {binds}",
                       {"output": run.output})
