"""shocker: open_by_handle_at."""

from __future__ import annotations

import os

from engine.attacks.base import Attack, Lab, Outcome, fs_location, seccomp_mitigation


class Shocker(Attack):
    name = "shocker"
    title = "shocker (open_by_handle_at)"
    technique = ("open_by_handle_at(2) relative to a file of the host's filesystem that is bind-mounted in "
                 "(/etc/hostname), with a guessed handle - ext4's root directory is inode 2, generation 0 - "
                 "gives a descriptor of the host filesystem's root; openat() from it reads any host file.")
    weak = "--cap-add DAC_READ_SEARCH (docker's seccomp profile then allows open_by_handle_at)"
    stops_it = ("no CAP_DAC_READ_SEARCH: docker's profile only allows open_by_handle_at with it, so seccomp "
                "returns EPERM (a seccomp_denied event); the kernel would refuse it too (may_decode_fh)")

    def skip_reason(self, lab: Lab) -> str | None:
        loc = fs_location(str(lab.host))
        if loc["fstype"] != "ext4":
            return f"the lab directory is on {loc['fstype']}, the handle guess is ext4's"
        return None

    def config(self, lab: Lab, profile: str) -> dict:
        return {"security": {"cap_add": ["CAP_DAC_READ_SEARCH"]}} if profile == "weak" else {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        rel = os.path.join(fs_location(str(lab.host))["relpath"], "secret.txt")
        helper = lab.helper("shocker")
        run = lab.run([helper, "/etc/hostname", rel], extra=self.config(lab, profile))
        secret = run.first("SECRET:")
        if secret == lab.secret:
            return Outcome(True, f"through a guessed handle the container opened the host's /{rel}: {secret!r}",
                           details={"output": run.output})
        return Outcome(False, run.first("BLOCKED:") or "nothing read", seccomp_mitigation(run, ("open_by_handle_at",)),
                       {"output": run.output})
