/* labtui-monitor: what a container's supervisor becomes while nothing needs Python.
 *
 * The Python supervisor (engine/supervisor.py) execs this program once its container has been
 * idle for a moment (engine/idle.py decides when and writes the arguments). It keeps every
 * descriptor the supervisor had, so it stays the parent of the container's PID 1 and keeps
 * reading its output into container.log, in the same json-file records the Python LogWriter
 * writes. Anything else wakes Python: it execs the supervisor again (the argv after "--"), with
 * every event still pending for Python to see - the exit (pidfd readable, the child not reaped),
 * a client on the attach socket (not accepted), a seccomp denial of this container (the audit
 * record peeked at, not read), a limit counter that moved, the log's disk nearly full. conmon
 * does the same job for podman, in C, for the same reason: a few hundred KiB per container
 * instead of an interpreter's megabytes.
 *
 * Options (all written by engine/idle.py):
 *   --pidfd FD --listen FD --log FD --reserve BYTES --interval MS
 *   --out FD:stdout|stderr        an output pipe or pty master (repeated)
 *   --partial stdout|stderr:FD    a memfd holding an unterminated line (read, then closed)
 *   --audit FD --session N --sessions FILE --pidns INODE
 *   --wake-fd FD                  wake when readable (a published port's listening socket)
 *   --watch FILE:KEY:LAST         wake when KEY ("-": the whole file) rises above LAST
 *   --memory USAGE:STAT:KEY:LIMIT:PERMILLE:ge|lt   wake when usage - KEY of STAT crosses
 *   -- ARGV...                    the supervisor to exec on wake; appended: --wake REASON,
 *                                 --out FD:STREAM (the still open ones), --partial STREAM:FD,
 *                                 --dropped BYTES
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MAX_OUT 3
#define MAX_WATCH 8
#define CHUNK 65536
#define PARTIAL_MAX (16 * 1024) /* docker splits log lines at 16 KiB (engine/logs.py) */
#define AUDIT_SECCOMP 1326

struct out { int fd; const char *stream; char *partial; size_t plen; };
struct watch { char file[4096]; char key[64]; long long last; };
struct memory { char usage[4096], stat[4096], key[64], limit[4096]; long permille; int below; int on; };

static struct out outs[MAX_OUT];
static int nout;
static struct watch watches[MAX_WATCH];
static int nwatch;
static struct memory mem;
static int pidfd = -1, listen_fd = -1, log_fd = -1, audit_fd = -1;
#define MAX_WAKE 16
static int wake_fds[MAX_WAKE];
static int nwake;
static long long reserve, session = -1, dropped;
static unsigned long long pidns;
static const char *sessions_file;
static long interval_ms = 250;
static char **resume_argv;
static int resume_argc;

static void fail(const char *msg) {
    fprintf(stderr, "labtui-monitor: %s\n", msg);
    exit(125);
}

static struct out *out_for(const char *stream) {
    for (int i = 0; i < nout; i++)
        if (strcmp(outs[i].stream, stream) == 0) return &outs[i];
    return NULL;
}

static const char *stream_name(const char *s) {
    if (strcmp(s, "stdout") == 0) return "stdout";
    if (strcmp(s, "stderr") == 0) return "stderr";
    fail("unknown stream");
    return NULL;
}

/* ---- the log: engine/logs.py LogWriter's records, byte for byte ------------------------ */

struct buf { char *p; size_t len, cap; };

static void put(struct buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) fail("out of memory");
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_u(struct buf *b, unsigned cp) {
    char tmp[16];
    snprintf(tmp, sizeof tmp, "\\u%04x", cp & 0xFFFFu);
    put(b, tmp, 6);
}

/* Length of a valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates), else 0. */
static int utf8_len(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; *cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3; *cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4; *cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        unsigned d = s[i];
        if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xBF)) return 0;
        *cp = (*cp << 6) | (d & 0x3F);
    }
    return len;
}

/* json.dumps(str) with ensure_ascii: the text decoded as UTF-8 with U+FFFD for bad bytes
 * (bytes.decode("utf-8", "replace")), every character outside ' '..'~' escaped. */
static void put_json_string(struct buf *b, const unsigned char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c >= 0x80) {
            unsigned cp;
            int len = utf8_len(s + i, n - i, &cp);
            if (len == 0) { put_u(b, 0xFFFD); i++; continue; }
            if (cp >= 0x10000) {
                cp -= 0x10000;
                put_u(b, 0xD800 | (cp >> 10));
                put_u(b, 0xDC00 | (cp & 0x3FF));
            } else put_u(b, cp);
            i += len;
            continue;
        }
        i++;
        switch (c) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        case '\b': put(b, "\\b", 2); break;
        case '\f': put(b, "\\f", 2); break;
        default:
            if (c < 0x20 || c == 0x7F) put_u(b, c);
            else { char ch = (char)c; put(b, &ch, 1); }
        }
    }
    put(b, "\"", 1);
}

static void put_record(struct buf *b, const char *stream, const unsigned char *s, size_t n) {
    struct timespec ts;
    struct tm tm;
    char when[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    long long us = ((long long)ts.tv_sec * 1000000 + (ts.tv_nsec + 500) / 1000);
    time_t sec = (time_t)(us / 1000000);
    gmtime_r(&sec, &tm);
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%06lld000Z", us % 1000000);
    put(b, "{\"log\": ", 8);
    put_json_string(b, s, n);
    put(b, ", \"stream\": \"", 13);
    put(b, stream, strlen(stream));
    put(b, "\", \"time\": \"", 12);
    put(b, when, strlen(when));
    put(b, "\"}\n", 3);
}

/* Free bytes on the log's filesystem minus what a write of n would take, against the reserve
 * (LogWriter._append): below it, Python takes over and drops as docker's json-file driver. */
static int log_has_room(size_t n) {
    struct statvfs st;
    if (fstatvfs(log_fd, &st) != 0) return 1;
    return (long long)st.f_bavail * (long long)st.f_frsize - (long long)n >= reserve;
}

/* LogWriter.write: complete lines are records; a partial line waits, unless 16 KiB long. */
static int log_chunk(struct out *o, const char *data, size_t n) {
    struct buf all = {0}, out = {0};
    put(&all, o->partial ? o->partial : "", o->plen);
    put(&all, data, n);
    size_t start = 0;
    for (size_t i = 0; i < all.len; i++) {
        if (all.p[i] == '\n') {
            put_record(&out, o->stream, (unsigned char *)all.p + start, i + 1 - start);
            start = i + 1;
        }
    }
    size_t rest = all.len - start;
    if (rest >= PARTIAL_MAX) {
        put_record(&out, o->stream, (unsigned char *)all.p + start, rest);
        rest = 0;
    }
    free(o->partial);
    o->partial = malloc(rest + 1);
    memcpy(o->partial, all.p + all.len - rest, rest);
    o->plen = rest;
    free(all.p);
    int ok = 1;
    if (out.len) {
        if (!log_has_room(out.len)) { dropped += (long long)out.len; ok = 0; }
        else if (write(log_fd, out.p, out.len) != (ssize_t)out.len) { dropped += (long long)out.len; ok = 0; }
    }
    free(out.p);
    return ok;
}

/* ---- what wakes Python ------------------------------------------------------------------ */

static long long read_counter(const char *file, const char *key) {
    char text[8192];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return -1;
    text[n] = 0;
    if (strcmp(key, "-") == 0) return strtoll(text, NULL, 10);
    size_t klen = strlen(key);
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') return strtoll(line + klen + 1, NULL, 10);
    }
    return -1;
}

/* engine/cgroups/alerts.py: a counter rose (an OOM kill, a throttled period, a refused fork),
 * or the working set (usage minus inactive file cache) crossed 90 % of the limit. */
static const char *counters_moved(void) {
    for (int i = 0; i < nwatch; i++) {
        long long v = read_counter(watches[i].file, watches[i].key);
        if (v > watches[i].last) return "alert";
    }
    if (mem.on) {
        long long usage = read_counter(mem.usage, "-"), limit = read_counter(mem.limit, "-");
        long long inactive = read_counter(mem.stat, mem.key);
        if (usage >= 0 && limit > 0) {
            long long ws = usage - (inactive > 0 ? inactive : 0);
            int high = (__int128)ws * 1000 >= (__int128)limit * mem.permille;
            if (mem.below ? !high : high) return "memory";
        }
    }
    return NULL;
}

static int session_is_ours(long long ses) {
    if (ses == session) return 1;
    if (!sessions_file) return 0;
    FILE *f = fopen(sessions_file, "re");
    if (!f) return 0;
    long long s;
    int found = 0;
    while (fscanf(f, "%lld", &s) == 1) if (s == ses) { found = 1; break; }
    fclose(f);
    return found;
}

static long long field_of(const char *text, const char *name) {
    const char *p = strstr(text, name);
    return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

/* A seccomp record (AUDIT_SECCOMP) of one of this container's processes: its audit session,
 * or its PID namespace (engine/seccomp/denials.py DenialWatcher._ours). */
static int record_is_ours(const char *text) {
    if (session_is_ours(field_of(text, " ses="))) return 1;
    long long pid = field_of(text, " pid=");
    if (pid <= 0 || !pidns) return 0;
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%lld/ns/pid", pid);
    return stat(path, &st) == 0 && (unsigned long long)st.st_ino == pidns;
}

/* Peek at the next datagram: ours stays queued for Python's DenialWatcher, the rest (other
 * containers' denials, other audit records) is read and let go. */
static int audit_wakes(void) {
    static char data[65536];
    for (;;) {
        ssize_t n = recv(audit_fd, data, sizeof data - 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0) return errno == ENOBUFS ? 1 : 0; /* overrun: let Python count what it can */
        int ours = 0;
        for (ssize_t off = 0; off + 16 <= n;) {
            uint32_t len;
            uint16_t type;
            memcpy(&len, data + off, 4);
            memcpy(&type, data + off + 4, 2);
            if (len < 16 || off + (ssize_t)len > n) break;
            if (type == AUDIT_SECCOMP) {
                char text[8192];
                size_t tl = len - 16 < sizeof text - 1 ? len - 16 : sizeof text - 1;
                memcpy(text, data + off + 16, tl);
                text[tl] = 0;
                if (record_is_ours(text)) ours = 1;
            }
            off += (len + 3) & ~3u;
        }
        if (ours) return 1;
        if (recv(audit_fd, data, sizeof data, MSG_DONTWAIT) < 0 && errno != EAGAIN) return 0;
    }
}

/* ---- back to Python ----------------------------------------------------------------------- */

static int to_memfd(const char *data, size_t n) {
    int fd = memfd_create("labtui-partial", 0);
    if (fd < 0) return -1;
    if (write(fd, data, n) != (ssize_t)n) { close(fd); return -1; }
    return fd;
}

static void wake(const char *reason) {
    char **argv = calloc((size_t)resume_argc + 4 * MAX_OUT + 8, sizeof *argv);
    int n = 0;
    for (int i = 0; i < resume_argc; i++) argv[n++] = resume_argv[i];
    argv[n++] = "--wake";
    argv[n++] = (char *)reason;
    for (int i = 0; i < nout; i++) {
        char *s;
        if (outs[i].fd >= 0) {
            if (asprintf(&s, "%d:%s", outs[i].fd, outs[i].stream) < 0) fail("out of memory");
            argv[n++] = "--out";
            argv[n++] = s;
        }
        if (outs[i].plen) {
            int fd = to_memfd(outs[i].partial, outs[i].plen);
            if (fd >= 0 && asprintf(&s, "%s:%d", outs[i].stream, fd) >= 0) {
                argv[n++] = "--partial";
                argv[n++] = s;
            }
        }
    }
    if (dropped) {
        char *s;
        if (asprintf(&s, "%lld", dropped) < 0) fail("out of memory");
        argv[n++] = "--dropped";
        argv[n++] = s;
    }
    argv[n] = NULL;
    for (;;) {
        execv(argv[0], argv);
        /* The container keeps running and its output keeps flowing meanwhile: try again. */
        fprintf(stderr, "labtui-monitor: cannot exec %s: %s; retrying\n", argv[0], strerror(errno));
        sleep(1);
    }
}

/* ---- arguments ----------------------------------------------------------------------------- */

static int int_arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0) fail("bad number");
    return (int)v;
}

static void copy_field(char *dst, size_t cap, const char *src, size_t n) {
    if (n >= cap) fail("argument too long");
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* "A:B:C..." split from the right into k fields (a file name may hold ':'). */
static int split_right(const char *s, const char **parts, size_t *lens, int k) {
    const char *end = s + strlen(s);
    for (int i = k - 1; i > 0; i--) {
        const char *c = end;
        while (c > s && c[-1] != ':') c--;
        if (c == s) return 0;
        parts[i] = c;
        lens[i] = (size_t)(end - c);
        end = c - 1;
    }
    parts[0] = s;
    lens[0] = (size_t)(end - s);
    return 1;
}

static void parse(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) { i++; break; }
        if (!v) fail("missing value");
        i++;
        if (strcmp(a, "--pidfd") == 0) pidfd = int_arg(v);
        else if (strcmp(a, "--listen") == 0) listen_fd = int_arg(v);
        else if (strcmp(a, "--log") == 0) log_fd = int_arg(v);
        else if (strcmp(a, "--reserve") == 0) reserve = atoll(v);
        else if (strcmp(a, "--interval") == 0) interval_ms = int_arg(v);
        else if (strcmp(a, "--audit") == 0) audit_fd = int_arg(v);
        else if (strcmp(a, "--wake-fd") == 0) {
            if (nwake == MAX_WAKE) fail("too many --wake-fd");
            wake_fds[nwake++] = int_arg(v);
        }
        else if (strcmp(a, "--session") == 0) session = atoll(v);
        else if (strcmp(a, "--sessions") == 0) sessions_file = v;
        else if (strcmp(a, "--pidns") == 0) pidns = strtoull(v, NULL, 10);
        else if (strcmp(a, "--out") == 0) {
            const char *c = strchr(v, ':');
            if (!c || nout == MAX_OUT) fail("bad --out");
            outs[nout].fd = atoi(v);
            outs[nout].stream = stream_name(c + 1);
            nout++;
        } else if (strcmp(a, "--partial") == 0) {
            const char *c = strchr(v, ':');
            if (!c) fail("bad --partial");
            char stream[16];
            copy_field(stream, sizeof stream, v, (size_t)(c - v));
            struct out *o = out_for(stream_name(stream));
            int fd = atoi(c + 1);
            struct stat st;
            if (!o || fstat(fd, &st) != 0) fail("bad --partial");
            o->partial = malloc((size_t)st.st_size + 1);
            o->plen = (size_t)pread(fd, o->partial, (size_t)st.st_size, 0);
            close(fd);
        } else if (strcmp(a, "--watch") == 0) {
            const char *p[3];
            size_t l[3];
            if (nwatch == MAX_WATCH || !split_right(v, p, l, 3)) fail("bad --watch");
            copy_field(watches[nwatch].file, sizeof watches[nwatch].file, p[0], l[0]);
            copy_field(watches[nwatch].key, sizeof watches[nwatch].key, p[1], l[1]);
            watches[nwatch].last = atoll(p[2]);
            nwatch++;
        } else if (strcmp(a, "--memory") == 0) {
            /* USAGE:STAT:KEY:LIMIT:PERMILLE:OP - cgroupfs paths hold no ':' of their own */
            const char *f[6];
            size_t l[6];
            const char *s = v;
            for (int k = 0; k < 6; k++) {
                const char *c = k < 5 ? strchr(s, ':') : s + strlen(s);
                if (!c) fail("bad --memory");
                f[k] = s;
                l[k] = (size_t)(c - s);
                s = c + 1;
            }
            copy_field(mem.usage, sizeof mem.usage, f[0], l[0]);
            copy_field(mem.stat, sizeof mem.stat, f[1], l[1]);
            copy_field(mem.key, sizeof mem.key, f[2], l[2]);
            copy_field(mem.limit, sizeof mem.limit, f[3], l[3]);
            mem.permille = atol(f[4]);
            mem.below = strncmp(f[5], "lt", 2) == 0;
            mem.on = 1;
        } else fail("unknown option");
    }
    if (i >= argc) fail("no supervisor to exec after --");
    resume_argv = argv + i;
    resume_argc = argc - i;
    if (pidfd < 0 || log_fd < 0) fail("--pidfd and --log are required");
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    /* Still the container's supervisor (same PID, same stderr: supervisor.log), and named so:
     * ps, `system check` and the tests find supervisors by this name. */
    prctl(PR_SET_NAME, "labtui-sup", 0, 0, 0);
    parse(argc, argv);
    long long next_check = 0;
    for (;;) {
        struct pollfd p[MAX_OUT + 3 + MAX_WAKE];
        int n = 0, first_out;
        p[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = audit_fd, .events = POLLIN};
        first_out = n;
        for (int i = 0; i < nout; i++) p[n++] = (struct pollfd){.fd = outs[i].fd, .events = POLLIN};
        for (int i = 0; i < nwake; i++) p[n++] = (struct pollfd){.fd = wake_fds[i], .events = POLLIN};
        long long wait = next_check - now_ms();
        int r = poll(p, (nfds_t)n, wait < 0 ? 0 : (int)wait);
        if (r < 0 && errno != EINTR) fail("poll failed");
        if (r > 0) {
            if (p[0].revents) wake("exit");
            if (p[1].revents) wake("client");
            if (p[2].revents && audit_wakes()) wake("seccomp");
            for (int i = 0; i < nwake; i++)
                if (p[first_out + nout + i].revents) wake("port");
            for (int i = 0; i < nout; i++) {
                if (!p[first_out + i].revents) continue;
                /* Python's LogWriter takes over when the disk nears its reserve. */
                if (!log_has_room(CHUNK)) wake("log-full");
                static char data[CHUNK];
                ssize_t got = read(outs[i].fd, data, sizeof data);
                if (got > 0) {
                    if (!log_chunk(&outs[i], data, (size_t)got)) wake("log-full");
                } else if (got == 0 || errno == EIO) { /* EIO: a pty whose last slave closed */
                    close(outs[i].fd);
                    outs[i].fd = -1;
                }
            }
        }
        /* The counters every interval, not on every chunk of output (as the supervisor). */
        long long now = now_ms();
        if (now >= next_check) {
            next_check = now + interval_ms;
            const char *moved = counters_moved();
            if (moved) wake(moved);
        }
    }
}
