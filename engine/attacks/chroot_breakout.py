"""chroot breakout against pivot_root."""

from __future__ import annotations

from engine.attacks.base import Attack, Lab, Outcome, read_text, step_text


class ChrootBreakout(Attack):
    name = "chroot"
    title = "chroot breakout"
    technique = ("chroot(2) into a subdirectory keeps the working directory outside the new root; chdir(\"..\") "
                 "from there climbs to the real root of the mount namespace, and chroot(\".\") makes it the "
                 "process's root. The payload then reads a secret and writes a marker in a host directory.")
    weak = ("the runtime enters the root filesystem with chroot(2) instead of pivot_root(2) (config "
            "rootfs_mode=chroot): the host's mounts stay in the container's mount namespace")
    stops_it = ("pivot_root(\".\", \".\") then umount -l of the old root: the host's tree is no longer in the "
                "container's mount namespace at all, so \"..\" stops at the container's / (pivot_root(2)). "
                "Dropping CAP_SYS_CHROOT (and seccomp's chroot rule, gated on it) closes it too.")

    def config(self, lab: Lab, profile: str) -> dict:
        return {"rootfs_mode": "chroot"} if profile == "weak" else {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        helper = lab.helper("chroot_escape")
        run = lab.run([helper, str(lab.host)], extra=self.config(lab, profile))
        marker = read_text(lab.host / "chroot.marker")
        secret = run.first("SECRET:")
        if secret == lab.secret and marker:
            return Outcome(True, f"from inside the container the payload read the host secret {secret!r} at "
                                 f"{lab.host}/secret.txt and wrote {lab.host}/chroot.marker "
                                 f"({marker.strip()!r})", details={"output": run.output})
        pivot = run.step("rootfs", "pivot_root")
        umount = run.step("rootfs", "umount old root")
        why = run.first("BLOCKED:") or "no secret found"
        return Outcome(False, f"the climb ended inside the container's root: {why}",
                       f"{step_text(pivot)}; {step_text(umount)}", {"output": run.output})
