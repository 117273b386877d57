/* labtui-init: the container's PID 1 once its command has been started.
 *
 * What it does is tini's job: forward the signals PID 1 receives to the command, reap every
 * orphan that the kernel reparents to it, and exit with the command's status (128+N when a
 * signal N killed it). engine/init.py starts the command from the Python PID 1 it was cloned as,
 * then execs this program by descriptor (engine/native/__init__.py) so that PID 1 costs a
 * few pages instead of a whole interpreter (issue 15: idle memory per container).
 *
 * Usage (set by engine/init.py): INIT_MAIN_PID=<the command's PID> labtui-init
 * The signals to wait for are the ones blocked when it starts: execve(2) keeps the signal mask
 * and pending signals, so nothing sent between the spawn and this exec is lost.
 *
 * Freestanding (no libc): it runs inside the container's root, where no loader or libc of the
 * host exists, and it stays a few pages.
 */
#include <asm/unistd.h>

#if defined(__x86_64__)
static long sc4(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n call start_c\n hlt\n");
#elif defined(__aarch64__)
static long sc4(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x0, sp\n bl start_c\n");
#else
#error "labtui-init: x86_64 and aarch64 only (elsewhere the engine keeps its Python init)"
#endif

#define SIGCHLD 17
#define WNOHANG 1
#define PR_SET_NAME 15
#define PR_SET_DUMPABLE 4
#define ECHILD 10

static void die(int code) {
    for (;;) sc4(__NR_exit_group, code, 0, 0, 0);
}

/* wait(2)'s status as a shell reports it: the exit status, or 128 + the killing signal. */
static int exit_code(int status) {
    int sig = status & 0x7f;
    if (sig != 0 && sig != 0x7f) return 128 + sig;
    return (status >> 8) & 0xff;
}

/* Reap whatever has exited; returns the command's code once it is among them, else -1. */
static int reap(long main_pid) {
    for (;;) {
        int status = 0;
        long pid = sc4(__NR_wait4, -1, (long)&status, WNOHANG, 0);
        if (pid == main_pid) return exit_code(status);
        if (pid == -ECHILD) return 125; /* cannot happen: the command is our child */
        if (pid <= 0) return -1;
    }
}

/* The command's PID: INIT_MAIN_PID=N, the first variable of the environment, which is otherwise
 * the container's own (as docker-init's: /proc/1/cmdline and environ show nothing of the host;
 * the PID is not an argument so that cmdline reads just "labtui-init"). */
static long main_pid_from(char **envp) {
    static const char key[] = "INIT_MAIN_PID=";
    for (; *envp; envp++) {
        const char *e = *envp;
        int i = 0;
        while (key[i] && e[i] == key[i]) i++;
        if (key[i]) continue;
        long pid = 0;
        for (e += i; *e >= '0' && *e <= '9'; e++) pid = pid * 10 + (*e - '0');
        return pid;
    }
    return 0;
}

void start_c(long *sp) {
    char **envp = (char **)(sp + 1 + sp[0] + 1);
    long main_pid = main_pid_from(envp);
    if (main_pid <= 0) die(125);
    /* execve(2) made us dumpable again: /proc/1/{mem,exe,fd} must stay closed to the
     * container (CVE-2019-5736 class), as the Python init had it. */
    sc4(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0);
    sc4(__NR_prctl, PR_SET_NAME, (long)"labtui-init", 0, 0);
    unsigned long mask = 0;
    sc4(__NR_rt_sigprocmask, 0 /* SIG_BLOCK */, 0, (long)&mask, sizeof mask);
    mask |= 1UL << (SIGCHLD - 1);
    sc4(__NR_rt_sigprocmask, 0, (long)&mask, 0, sizeof mask);
    for (;;) {
        int code = reap(main_pid);
        if (code >= 0) die(code);
        long info[16];
        long sig = sc4(__NR_rt_sigtimedwait, (long)&mask, (long)info, 0, sizeof mask);
        if (sig > 0 && sig != SIGCHLD) sc4(__NR_kill, main_pid, sig, 0, 0);
    }
}
