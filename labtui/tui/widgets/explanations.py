"""What the kernel does for each step, in a sentence or three, shown under the Steps table.

Keyed by (mechanism, op); a few ops are refined by what they act on (the filesystem type of a
mount), and every mechanism has a fallback.
"""

from __future__ import annotations

EXPLAIN: dict[tuple[str, str], str] = {
    ("namespace", "clone"): (
        "clone(2) creates the container's first process. Each CLONE_NEW* flag gives it a new "
        "namespace: NEWNS its own mount table, NEWUTS its own hostname, NEWIPC its own SysV IPC "
        "objects, NEWPID a PID numbering where it is PID 1, NEWNET a network stack with only `lo`."),
    ("namespace", "unshare"): (
        "unshare(2) moves the calling process into new namespaces. CLONE_NEWCGROUP is done here, "
        "after the supervisor put the child in its cgroup: a cgroup namespace's root is the cgroup "
        "its creator is in at that moment, so /proc/self/cgroup inside shows '/'."),
    ("namespace", "setns"): (
        "setns(2) joins an existing namespace through a file descriptor on /proc/PID/ns/*; the "
        "engine uses it to configure the container's network from the host side."),
    ("namespace", "open"): (
        "Opening /proc/PID/ns/net gives a file descriptor that names the namespace (and keeps it "
        "alive) so netlink requests can be aimed at it."),
    ("mount", "make-rprivate"): (
        "mount(2) with MS_REC|MS_PRIVATE: stop mount propagation between the new mount namespace "
        "and the host's, so the container's mounts never appear on the host (and vice versa)."),
    ("rootfs", "mount overlay"): (
        "overlayfs stacks the image's read-only layers (lowerdir) under a per-container writable "
        "upperdir; the merged view becomes the root filesystem. Writes copy files up, deletes leave "
        "whiteouts; the image itself is never modified."),
    ("mount", "mount"): (
        "mount(2) of a fresh filesystem inside the new root: proc shows only this PID namespace's "
        "processes, sysfs is read-only, /dev is a small tmpfs, devpts with newinstance gives the "
        "container its own pseudo-terminals, /dev/shm its own tmpfs."),
    ("mount", "bind file"): (
        "A bind mount (MS_BIND) makes a host file appear at a path inside: /etc/hostname, "
        "/etc/hosts and /etc/resolv.conf are generated per container and bound in."),
    ("mount", "bind console"): (
        "/dev/console is bound to a terminal (or /dev/null), so programs that write to the console "
        "do not reach the host's."),
    ("mount", "bind volume"): (
        "A volume is a bind mount of a host directory into the container (MS_BIND|MS_REC); with :ro "
        "it is remounted read-only. Host and container see the same inode."),
    ("mount", "remount ro"): (
        "MS_REMOUNT|MS_BIND|MS_RDONLY turns an existing mount read-only (--read-only root, ro volumes)."),
    ("device", "mknod"): (
        "mknod(2) creates a character device node (major:minor) in the container's /dev: null, zero, "
        "full, random, urandom, tty. Only these few devices exist inside; no disks, no /dev/mem."),
    ("device", "open ptmx"): (
        "Opening /dev/ptmx of the container's own devpts allocates a pseudo-terminal pair; the slave "
        "becomes the container's terminal."),
    ("rootfs", "pivot_root"): (
        "pivot_root(2) makes the overlay the root of this mount namespace and puts the old root on "
        "top of it ('pivot_root . .'). Unlike chroot it changes the mount tree itself, so the host's "
        "filesystem can be detached entirely."),
    ("rootfs", "umount old root"): (
        "umount2(MNT_DETACH) lazily detaches the old root (the host's whole filesystem) stacked by "
        "pivot_root: from now on nothing of the host's tree is reachable from inside."),
    ("uts", "sethostname"): (
        "sethostname(2) in the new UTS namespace: the container gets its own hostname; the host's is "
        "unchanged."),
    ("network", "link set up"): (
        "A new network namespace has only the loopback device, and it is down. An SIOCSIFFLAGS ioctl "
        "sets IFF_UP so 127.0.0.1 works inside."),
    ("network", "link_add"): (
        "RTM_NEWLINK over netlink creates a device: a veth pair (two ends of a virtual cable) or the "
        "bridge that joins the containers' host ends."),
    ("network", "link_set"): (
        "RTM_NEWLINK changes a device: bring it up, attach it to a bridge (master), or move one veth "
        "end into the container's network namespace (IFLA_NET_NS_FD) and rename it eth0."),
    ("network", "link_del"): "RTM_DELLINK deletes a device; deleting one end of a veth pair removes both.",
    ("network", "addr_add"): "RTM_NEWADDR assigns an IP address to an interface (ip addr add).",
    ("network", "route_add"): (
        "RTM_NEWROUTE adds a route, here the container's default route via the bridge's address."),
    ("network", "publish port"): (
        "A published port: the supervisor listens on the host port and forwards each connection to "
        "the container's address, like docker-proxy."),
    ("process", "prctl"): (
        "prctl(PR_SET_DUMPABLE, 0) makes the container's init non-dumpable: its /proc/1/mem, exe and "
        "fd files are closed to other processes in the container."),
    ("exec", "execve"): (
        "execve(2) replaces the child's program with the container's command. The steps pipe is "
        "O_CLOEXEC, so the supervisor reads end-of-file exactly when execve succeeded."),
    ("signal", "pidfd_send_signal"): (
        "pidfd_send_signal(2) signals the container's init through a pidfd: once the pidfd is open, "
        "the PID cannot be recycled under us (a plain kill(2) has that race)."),
    ("signal", "kill"): "kill(2) sends a signal to a process, here one left in the cgroup at teardown.",
    ("cgroup", "mkdir"): (
        "mkdir in the cgroup filesystem creates a control group; the kernel fills the directory "
        "with its interface files (cpu.max, memory.max, pids.max, ...)."),
    ("cgroup", "write"): (
        "Writing a cgroup file sets a limit or moves a process: memory.max / memory.limit_in_bytes "
        "caps RAM, cpu.max / cpu.cfs_quota_us caps CPU time per period, pids.max caps forks, and "
        "writing a PID to cgroup.procs moves that process into the group."),
    ("cgroup", "rmdir"): "rmdir removes an empty control group (it fails with EBUSY while tasks remain).",
    ("cgroup", "skip"): "A limit this kernel or cgroup layout cannot enforce; the engine says so and goes on.",
    ("capability", "prctl PR_CAPBSET_DROP"): (
        "prctl(PR_CAPBSET_DROP) removes a capability from the bounding set: no process in the container "
        "can ever regain it, not even root executing a setuid-root or file-capability binary."),
    ("capability", "prctl PR_CAP_AMBIENT_CLEAR_ALL"): (
        "Clears the ambient set, so no capability survives execve of an ordinary program by itself."),
    ("capability", "drop all (init)"): (
        "The container's init (PID 1 inside) gives up every capability: it only forwards signals and "
        "reaps zombies, so a compromised init is worth nothing."),
    ("cgroup", "write devices"): (
        "The devices controller's allowlist (devices.allow / devices.deny, or a BPF program on v2) decides "
        "which device numbers the container may open or mknod, whatever its capabilities."),
    ("process", "close-on-exec fds >= 3"): (
        "Every inherited file descriptor above stderr is marked close-on-exec, so no host file, socket "
        "or directory leaks into the container's command (the 'leaked fd' escape)."),
    ("process", "verify cwd"): (
        "The working directory is checked to be inside the new root: a cwd left on the host's tree "
        "would be a way out (CVE-2024-21626)."),
    ("process", "setuid"): "setuid(2)/setgid(2): the process drops to the configured user before execve.",
    ("process", "setgroups"): "setgroups(2) sets the supplementary groups (often to none) before dropping privileges.",
    ("process", "fork"): "fork(2): a new process, here for exec's helper inside the container's namespaces.",
    ("process", "clone"): "clone(2) of a process inside the container (exec), already in its namespaces.",
    ("process", "sched_setscheduler"): "sched_setscheduler(2) sets the scheduling policy of the container's process.",
    ("process", "setpriority"): "setpriority(2) sets the nice value of the container's processes.",
    ("rootfs", "chroot"): (
        "chroot(2) only changes the root for path lookup; unlike pivot_root it leaves the old tree "
        "mounted, which is why a chroot alone can be escaped."),
    ("seccomp", "build filter"): (
        "The seccomp BPF program is compiled in the supervisor, before fork: the child only loads it."),
    ("seccomp", "audit session"): "Seccomp denials are watched (audit / notification) and turned into events.",
    ("userns", "setresuid/setresgid"): (
        "Inside the user namespace the process becomes uid/gid 0, which maps to an unprivileged ID on the host."),
    ("userns", "chown"): "Files are chowned to the shifted (mapped) owner so root inside owns them.",
    ("userns", "chmod"): "Permissions are adjusted for the shifted owner of the container's files.",
    ("userns", "copy layer (shifted owners)"): (
        "An image layer is copied with every owner shifted by the mapping's offset, so IDs inside match "
        "the files (what idmapped mounts do without copying)."),
    ("checkpoint", "criu check"): "criu check: does this kernel support everything checkpoint/restore needs?",
    ("capability", "drop"): (
        "Capabilities split root's power into ~40 bits. Dropping one from the bounding set means no "
        "process in the container can ever regain it, even by executing a setuid binary."),
    ("capability", "capset"): (
        "capset(2) sets the effective, permitted and inheritable capability sets of the process."),
    ("seccomp", "load filter"): (
        "seccomp(SECCOMP_SET_MODE_FILTER) installs a BPF program that the kernel runs on every system "
        "call: forbidden calls fail with EPERM (or kill the process). It needs no_new_privs or "
        "CAP_SYS_ADMIN, and it is inherited across fork and execve."),
    ("userns", "write uid_map"): (
        "Writing /proc/PID/uid_map maps user IDs inside a user namespace to IDs outside: root (0) "
        "inside can be an unprivileged user on the host."),
    ("sysctl", "write"): "A per-namespace sysctl written under /proc/sys inside the container.",
}

FALLBACK: dict[str, str] = {
    "namespace": "A namespace operation: namespaces give a process its own view of one kernel resource.",
    "mount": "A mount(2) operation in the container's private mount namespace.",
    "rootfs": "Building the container's root filesystem from the image.",
    "cgroup": "A cgroup filesystem operation: control groups limit and account resources.",
    "process": "A process attribute set with prctl(2) or similar.",
    "device": "A device node or terminal operation.",
    "network": "A network operation, done over netlink (rtnetlink(7)) or an ioctl.",
    "uts": "The UTS namespace holds the hostname and NIS domain name.",
    "capability": "A capability operation (capabilities(7)).",
    "seccomp": "A seccomp operation: system-call filtering (seccomp(2)).",
    "userns": "A user-namespace operation (user_namespaces(7)).",
    "sysctl": "A kernel parameter under /proc/sys.",
    "image": "An image operation: unpacking or resolving layers.",
    "exec": "Running a program with execve(2).",
    "signal": "Delivering a signal.",
    "checkpoint": "Checkpoint/restore of a process tree.",
}

MOUNT_BY_FS = {
    "proc": "mount -t proc: a procfs for the new PID namespace, so ps inside sees only the container's "
            "processes (and its init as PID 1).",
    "sysfs": "mount -t sysfs, read-only: the container may look at devices and kernel objects, not change them.",
    "tmpfs": "mount -t tmpfs: a RAM-backed filesystem (here /dev or /dev/shm), private to the container.",
    "devpts": "mount -t devpts -o newinstance: the container's own pseudo-terminal numbering (/dev/pts).",
    "mqueue": "mount -t mqueue: POSIX message queues of the container's IPC namespace.",
}


def explain(step: dict) -> str:
    """The explanation of one step record."""
    mech, op = str(step.get("mechanism", "")), str(step.get("op", ""))
    if (mech, op) == ("mount", "mount"):
        fstype = str(step.get("value", "")).split(" ", 1)[0]
        if fstype in MOUNT_BY_FS:
            return MOUNT_BY_FS[fstype]
    if (mech, op) in EXPLAIN:
        return EXPLAIN[(mech, op)]
    if mech == "cgroup" and op.startswith("write"):
        return EXPLAIN[("cgroup", "write")]
    return FALLBACK.get(mech, "A kernel operation recorded by the engine.")
