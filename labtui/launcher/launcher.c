/*
 * The installed `labtui` command, when a C compiler was there at install time (scripts/install).
 *
 * It does what labtui/launcher/launch.py's fast path does, with the same protocol, and nothing else: hand
 * the command to the warm helper (labtui/launcher/helper.py) and wait for its exit status. Everything
 * labtui does (parsing, the engine, every kernel step) still runs in Python, in the helper's
 * worker. What this saves is starting an interpreter for a hand-over: `python3 -SI` takes
 * ~6.5 ms here (about 730 page faults on this VM), a static C program ~0.5 ms.
 *
 * When no helper takes the command (none running, not root, LABTUI_HELPER=0, a stale helper,
 * a caller confined otherwise than the helper (labtui/launcher/trust.py), no arguments: the
 * terminal app) it execs `python3 -SI labtui/launcher/launch.py ARGS...`, which runs
 * the command the ordinary way and starts a helper. docs/launcher.md explains the whole path.
 *
 * Built with -DLABTUI_PYTHON="..." -DLABTUI_LAUNCH_PY="..." (the venv's interpreter and this
 * tree's launch.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(LABTUI_PYTHON) || !defined(LABTUI_LAUNCH_PY)
#error "build with -DLABTUI_PYTHON=\"/path/python3\" -DLABTUI_LAUNCH_PY=\"/path/labtui/launcher/launch.py\""
#endif

extern char **environ;

static const char PROTOCOL[] = "labtui-helper-1"; /* launch.py's PROTOCOL */
/* launch.py's FORWARDED: what the worker must get as if it had been sent to it. */
static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
                                SIGUSR2, SIGWINCH, SIGTSTP, SIGCONT};
#define NFORWARDED ((int)(sizeof FORWARDED / sizeof FORWARDED[0]))

static volatile sig_atomic_t worker;  /* the worker's PID, once the helper told it */
static volatile sig_atomic_t pending; /* bit i: FORWARDED[i] came before the worker was known */

static void forward(int sig);

static void handle(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART; /* recv(2) on the socket goes on after a forwarded signal */
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static void forward(int sig) {
    int saved = errno;
    if (!worker) {
        for (int i = 0; i < NFORWARDED; i++)
            if (FORWARDED[i] == sig)
                pending |= 1 << i;
    } else if (sig == SIGTSTP) {
        /* ^Z: the worker stops with us and goes on with us (SIGCONT is forwarded too). Stop
         * ourselves the default way: SIGTSTP is blocked in its own handler, so unblock it.
         * SIGCONT is held meanwhile, to tell afterwards whether we stopped at all: in an
         * orphaned process group (no job-control shell above it: setsid, nohup, a CI runner)
         * the kernel discards SIGTSTP (POSIX; signal(7), kernel/signal.c), as it would for the
         * command run the ordinary way. Then the worker must go on too, or it stays stopped
         * with no one to resume it. */
        sigset_t s, cont;
        sigemptyset(&cont);
        sigaddset(&cont, SIGCONT);
        sigprocmask(SIG_BLOCK, &cont, NULL); /* held pending; it still resumes us (signal(7)) */
        kill(worker, SIGSTOP);
        handle(SIGTSTP, SIG_DFL);
        raise(SIGTSTP);
        sigemptyset(&s);
        sigaddset(&s, SIGTSTP);
        sigprocmask(SIG_UNBLOCK, &s, NULL); /* stopped here until SIGCONT, or discarded */
        handle(SIGTSTP, forward);
        sigpending(&s);
        if (!sigismember(&s, SIGCONT))
            kill(worker, SIGCONT); /* we never stopped */
        sigprocmask(SIG_UNBLOCK, &cont, NULL); /* a held SIGCONT is forwarded now */
    } else {
        kill(worker, sig);
    }
    errno = saved;
}

static const char *run_dir(char *buf, size_t len) {
    const char *root = getenv("LABTUI_ROOT"); /* engine.paths: one setting relocates the state */
    if (!root || !*root)
        return "/run/labtui";
    if ((size_t)snprintf(buf, len, "%s/run", root) >= len)
        return NULL;
    return buf;
}

static int wants_helper(int argc, char **argv) {
    const char *off = getenv("LABTUI_HELPER");
    if (argc < 2 || (off && strcmp(off, "0") == 0) || geteuid() != 0)
        return 0;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-') /* the command word; `serve` runs for hours, in its own process */
            return strcmp(argv[i], "serve") != 0;
    return 0;
}

/* 0, 1 and 2, /dev/null standing in for a closed one (SCM_RIGHTS needs real descriptors).
 * Before the socket is made: a closed 0 must not become the socket. */
static void stdio_fds(int fds[3]) {
    struct stat st;
    for (int fd = 0; fd < 3; fd++) {
        fds[fd] = fd;
        if (fstat(fd, &st) < 0)
            fds[fd] = open("/dev/null", O_RDWR);
    }
}

static void append(char **p, const char *s, size_t n) {
    memcpy(*p, s, n);
    *p += n;
    *(*p)++ = '\0';
}

/* NUL-separated: protocol, cwd, umask, argc, argv..., then KEY=VALUE environment entries
 * (launch.py's request(); labtui/launcher/helper.py's parse_request() reads it). */
static char *request(int argc, char **argv, size_t *len) {
    char *cwd = getcwd(NULL, 0); /* a removed working directory: "/" */
    const char *dir = cwd ? cwd : "/";
    char mask[16], count[16];
    mode_t m = umask(022);
    umask(m);
    snprintf(mask, sizeof mask, "%d", (int)m);
    snprintf(count, sizeof count, "%d", argc - 1);
    size_t total = sizeof PROTOCOL + strlen(dir) + strlen(mask) + strlen(count) + 4;
    for (int i = 1; i < argc; i++)
        total += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++)
        total += strlen(*e) + 1;
    char *buf = malloc(total), *p = buf;
    if (!buf) {
        free(cwd);
        return NULL;
    }
    append(&p, PROTOCOL, sizeof PROTOCOL - 1);
    append(&p, dir, strlen(dir));
    append(&p, mask, strlen(mask));
    append(&p, count, strlen(count));
    for (int i = 1; i < argc; i++)
        append(&p, argv[i], strlen(argv[i]));
    for (char **e = environ; *e; e++)
        if (strchr(*e, '=')) /* as Python's os.environ: entries without '=' are not variables */
            append(&p, *e, strlen(*e));
    free(cwd);
    *len = (size_t)(p - buf) - 1; /* no NUL after the last field */
    return buf;
}

static int send_request(int s, int argc, char **argv, const int fds[3]) {
    size_t len;
    char *req = request(argc, argv, &len);
    if (!req)
        return -1;
    struct iovec iov = {req, len};
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS; /* unix(7): the worker gets our very stdin, stdout and stderr */
    c->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
    /* MSG_NOSIGNAL: a helper that just went away is an EPIPE to fall back from, not a SIGPIPE
     * that kills the command (Python ignores SIGPIPE at start; a C program does not). */
    ssize_t n = sendmsg(s, &msg, MSG_NOSIGNAL);
    free(req);
    return n == (ssize_t)len ? 0 : -1;
}

static ssize_t recv_msg(int s, char *buf, size_t len) {
    ssize_t n;
    do
        n = recv(s, buf, len - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

/* The worker's wait status as our own: a worker killed by a signal kills us with it. */
static int exit_code(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        sigset_t s;
        handle(sig, SIG_DFL);
        sigemptyset(&s);
        sigaddset(&s, sig);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        kill(getpid(), sig);
        return 128 + sig;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}

/* The command's exit code from a helper's worker, or -1 when no helper took it. */
static int via_helper(int argc, char **argv) {
    char dirbuf[4096], buf[64];
    const char *dir = run_dir(dirbuf, sizeof dirbuf);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fds[3];
    if (!dir || (size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/helper.sock", dir) >=
                    sizeof addr.sun_path)
        return -1;
    stdio_fds(fds);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(s);
        return -1;
    }
    for (int i = 0; i < NFORWARDED; i++)
        handle(FORWARDED[i], forward);
    if (send_request(s, argc, argv, fds) < 0 || recv_msg(s, buf, sizeof buf) <= 0 || buf[0] != 'P') {
        close(s); /* "S": the helper's code is stale; "R": refused (we are not confined as it
                   * is: trust.py); nothing: it went away */
        return -1;
    }
    /* Signals that came before we knew the worker: to it now, in order with any new one. */
    sigset_t all, old;
    sigemptyset(&all);
    for (int i = 0; i < NFORWARDED; i++)
        sigaddset(&all, FORWARDED[i]);
    sigprocmask(SIG_BLOCK, &all, &old);
    worker = atoi(buf + 1);
    int early = pending;
    pending = 0;
    for (int i = 0; i < NFORWARDED; i++)
        if (early & (1 << i))
            forward(FORWARDED[i]);
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (;;) {
        ssize_t n = recv_msg(s, buf, sizeof buf);
        if (n > 0 && buf[0] == 'X')
            return exit_code(atoi(buf + 1));
        if (n <= 0) {
            static const char gone[] = "labtui: the helper process went away; run the command again\n";
            if (write(2, gone, sizeof gone - 1) < 0) {
                /* nothing more to say */
            }
            return 125;
        }
    }
}

/* The ordinary way, in Python: launch.py runs the command here and starts a helper. */
static void run_python(int argc, char **argv) {
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (args) {
        args[0] = LABTUI_PYTHON;
        args[1] = "-SI";
        args[2] = LABTUI_LAUNCH_PY;
        for (int i = 1; i < argc; i++)
            args[i + 2] = argv[i];
        /* Signals caught while asking the helper: back to their defaults (execve(2) would reset
         * them anyway), and one that came meanwhile (^C during the hand-over) acts now. */
        int early = pending;
        for (int i = 0; i < NFORWARDED; i++)
            handle(FORWARDED[i], SIG_DFL);
        for (int i = 0; i < NFORWARDED; i++)
            if (early & (1 << i))
                raise(FORWARDED[i]);
        execv(LABTUI_PYTHON, args);
    }
    fprintf(stderr, "labtui: cannot run %s: %s (run scripts/install again)\n", LABTUI_PYTHON,
            strerror(errno));
    exit(125);
}

int main(int argc, char **argv) {
    if (wants_helper(argc, argv)) {
        int code = via_helper(argc, argv);
        if (code >= 0)
            _exit(code);
    }
    run_python(argc, argv);
    return 125;
}
