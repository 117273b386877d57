"""Parsing `strace -f -tt -T -o` output into records and per-syscall counts."""

from __future__ import annotations

from engine.strace import classify, format_table, parse_line, summarize

TRACE = """\
# labtui: run --strace, init pid 100 at 2026-01-01T00:00:00Z
100  12:00:00.000001 read(18, "g", 1)  = 1 <0.001600>
101  12:00:00.000100 execve("/usr/local/sbin/sh", ["sh"], 0x7f /* 1 var */) = -1 ENOENT (No such file) <0.000250>
101  12:00:00.000400 execve("/bin/sh", ["sh", "-c", "echo hi"], 0x7f /* 1 var */) = 0 <0.001400>
101  12:00:00.002000 write(1, "a) = 3\\n", 7) = 7 <0.000006>
101  12:00:00.002100 write(1, "hi\\n", 3) = 3 <0.000004>
100  12:00:00.002200 rt_sigtimedwait([HUP INT QUIT USR1 USR2 TERM CHLD], NULL, NULL, 8 <unfinished ...>
101  12:00:00.002300 exit_group(0)     = ?
101  12:00:00.002400 +++ exited with 0 +++
100  12:00:00.002500 <... rt_sigtimedwait resumed>) = 17 (SIGCHLD) <0.000300>
100  12:00:00.002600 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=2, si_status=0} ---
100  12:00:00.002700 wait4(-1, 0x7ffd, WNOHANG, NULL) = -1 ECHILD (No child processes) <0.000002>
100  12:00:00.002800 read(3,  <unfinished ...>
100  12:00:00.102800 <... resumed>"x", 1) = 1 <0.100000>
100  12:00:00.102900 clock_nanosleep(0, 0, {tv_sec=0}, 0x7f) = ? ERESTART_RESTARTBLOCK (Interrupted) <0.0001>
"""


def test_complete_call():
    rec = parse_line('101  12:00:00.002100 write(1, "hi\\n", 3) = 3 <0.000004>')
    assert rec == {"kind": "syscall", "pid": 101, "time": "12:00:00.002100", "name": "write",
                   "args": '1, "hi\\n", 3', "ret": "3", "error": None, "duration": 0.000004}


def test_string_arguments_that_look_like_a_result():
    rec = parse_line('101  12:00:00.002000 write(1, "a) = 3\\n", 7) = 7 <0.000006>')
    assert rec["name"] == "write" and rec["ret"] == "7" and rec["args"] == '1, "a) = 3\\n", 7'


def test_error_and_errno_name():
    rec = parse_line('7 12:00:00.1 openat(AT_FDCWD, "/x", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000010>')
    assert rec["error"] == "ENOENT" and rec["ret"].startswith("-1 ENOENT") and rec["duration"] == 0.00001


def test_unfinished_resumed_signal_exit_and_no_result():
    assert parse_line("100  12:00:00.1 read(3,  <unfinished ...>")["kind"] == "unfinished"
    rec = parse_line("100  12:00:00.2 <... read resumed>\"x\", 1) = 1 <0.100000>")
    assert (rec["kind"], rec["name"], rec["duration"]) == ("syscall", "read", 0.1)
    assert parse_line("100  12:00:00.3 --- SIGCHLD {si_signo=SIGCHLD} ---")["signal"] == "SIGCHLD"
    assert parse_line("100  12:00:00.4 +++ exited with 0 +++") == {
        "kind": "exit", "pid": 100, "time": "12:00:00.4", "text": "exited with 0"}
    rec = parse_line("101  12:00:00.5 exit_group(0)     = ?")
    assert (rec["name"], rec["ret"], rec["duration"], rec["error"]) == ("exit_group", "?", None, None)


def test_lines_without_pid_or_time_and_noise():
    assert parse_line('getpid() = 1 <0.000001>')["name"] == "getpid"
    assert parse_line('[pid   42] 12:00:00.1 getpid() = 1 <0.000001>')["pid"] == 42
    assert parse_line("# labtui: trace") is None
    assert parse_line("") is None
    assert parse_line("strace: Process 1 attached") is None


def test_old_style_resumed_is_matched_to_its_pending_call():
    pending: dict[int, str] = {}
    parse_line("100  12:00:00.1 read(3,  <unfinished ...>", pending)
    assert pending == {100: "read"}
    rec = parse_line('100  12:00:00.2 <... resumed>"x", 1) = 1 <0.1>', pending)
    assert rec["name"] == "read" and pending == {}


def test_summary_counts_calls_errors_and_time():
    rows = {r["name"]: r for r in summarize(TRACE.splitlines(keepends=True))}
    assert rows["execve"]["calls"] == 2 and rows["execve"]["errors"] == 1
    assert abs(rows["execve"]["time"] - 0.00165) < 1e-9
    assert rows["write"]["calls"] == 2 and rows["write"]["errors"] == 0
    assert rows["read"]["calls"] == 2 and abs(rows["read"]["time"] - 0.1016) < 1e-9
    assert rows["rt_sigtimedwait"]["calls"] == 1
    assert rows["exit_group"]["calls"] == 1
    assert rows["wait4"]["errors"] == 1
    assert rows["clock_nanosleep"]["errors"] == 0  # a restart is not a failure
    ordered = summarize(TRACE.splitlines())
    assert ordered[0]["name"] == "read"  # most time first
    assert abs(sum(r["percent"] for r in ordered) - 100) < 0.1
    table = format_table(ordered)
    assert table.splitlines()[0].split() == ["%", "time", "seconds", "usecs/call", "calls", "errors", "syscall"]
    assert table.splitlines()[-1].split()[-1] == "total"


def test_empty_trace():
    assert summarize([]) == []
    assert format_table([]).splitlines()[-1].split()[-1] == "total"


def test_the_program_summary_leaves_labtui_out():
    """After `run --strace`: the init's calls (pid 100) and what came before the command's execve
    (the failed PATH lookup) are labtui's; from the execve that succeeded on, the program's."""
    rows = {r["name"]: r for r in summarize(TRACE.splitlines(), program_only=True)}
    assert rows["execve"]["calls"] == 1 and rows["execve"]["errors"] == 0
    assert rows["write"]["calls"] == 2 and rows["exit_group"]["calls"] == 1
    assert not {"read", "rt_sigtimedwait", "wait4", "clock_nanosleep"} & set(rows)


def test_classify_marks_where_the_command_starts_and_knows_the_attached_init():
    lines = TRACE.splitlines()
    marks = [(line.split()[0], counted, starts) for line, rec, counted, starts in classify(lines) if rec]
    assert marks[0] == ("100", False, None) and marks[1] == ("101", False, None)
    assert marks[2] == ("101", True, 100)  # the execve that succeeded
    assert [s for _p, _c, s in marks if s is not None] == [100]
    # `labtui trace` of a running container: every process but the init is the program's already
    attached = ["# labtui: trace, pids 7 9, init pid 7 at 2026-01-01T00:00:00Z",
                "7  12:00:00.000001 wait4(-1, 0x7ffd, WNOHANG, NULL) = 0 <0.000002>",
                "9  12:00:00.000002 clone(child_stack=NULL, flags=SIGCHLD) = 11 <0.000100>",
                "11 12:00:00.000003 execve(\"/bin/sleep\", [\"sleep\", \"1\"], 0x7f /* 1 var */) = 0 <0.000300>"]
    assert [r["name"] for r in summarize(attached, program_only=True)] == ["execve", "clone"]
    # a log older than the init's PID in the header: everything counts
    assert len(summarize(attached[1:] + ["# labtui: trace, pids 7 9 at 2026-01-01T00:00:00Z"] + attached[1:],
                         program_only=True)) == 3
