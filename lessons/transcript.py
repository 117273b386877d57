"""A lesson session's transcript: JSON lines chained by SHA-256, sealed with an HMAC (docs/lessons-grading.md).

    {"type":"header","n":1,"prev":null,"format":"labtui-transcript/1","lesson":"pid-namespace",...}
    {"type":"setup","n":2,"prev":"<sha256 of line 1>","task":"start","ts":...}
    {"type":"command","n":3,"prev":"<sha256 of line 2>","argv":["run","-d",...],"cwd":"/root","exit":0,...}
    ...
    {"type":"seal","n":9,"prev":"<sha256 of line 8>","hmac":"<HMAC-SHA256(key, sha256 of line 8)>"}

Why each field:
- `prev`, the SHA-256 of the previous line's exact bytes: a line edited, moved or removed breaks
  the chain where it stood. Without a key anyone can recompute the chain; it catches accidents
  and naive edits only.
- `n`, the line's own number: tells a removed or reordered line (n jumps) from an edited one
  (n fine, the next line's prev differs), so the message can name the line that was touched.
- the seal: HMAC-SHA256 with the grader's key over the last line's hash, which through the chain
  covers every line. It is always the last line: an append removes it and writes a new one, so
  a transcript is sealed at every moment and a truncated one has lost its seal.

Appends come from several processes (every `labtui` command of the student, `lesson status`, the
app): each takes an exclusive flock(2) on the file, reads the tail, writes its lines in one
write(2), and lets go.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from pathlib import Path

FORMAT = "labtui-transcript/1"
TYPES = ("header", "setup", "command", "step", "event", "evaluation", "hint", "seal")
TAIL_CHUNK = 65536


class TranscriptError(Exception):
    """A transcript that cannot be trusted as it stands; str() names the file and the first bad line."""

    def __init__(self, path: Path | str, line: int, what: str) -> None:
        super().__init__(f"{path}: line {line}: {what}" if line > 0 else f"{path}: {what}")
        self.path = str(path)
        self.line = line
        self.what = what

    @property
    def short(self) -> str:
        """The message without the file's name (a grade report names the file already)."""
        return f"line {self.line}: {self.what}" if self.line > 0 else self.what


def sha(line: bytes) -> str:
    """The hash the next line's `prev` records: SHA-256 of the line's bytes, newline excluded."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def seal_hmac(key: bytes, prev: str) -> str:
    return hmac.new(key, prev.encode(), hashlib.sha256).hexdigest()


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


# ---- keys ------------------------------------------------------------------------------------------

KEY_ENV = "LABTUI_GRADER_KEY"  # the key itself
KEY_FILE_ENV = "LABTUI_GRADER_KEY_FILE"  # a file holding it
DEFAULT_KEY_FILE = "/etc/labtui/grader.key"  # where an instructor's VM image puts it


def read_key_file(path: Path | str) -> bytes:
    """A key file's bytes, trailing whitespace removed (`head -c 32 /dev/urandom | base64 > key`)."""
    key = Path(path).read_bytes().rstrip()
    if not key:
        raise ValueError(f"the key file {path} is empty")
    return key


def key_from_env(env: dict | None = None) -> bytes | None:
    """The grader key for writing: LABTUI_GRADER_KEY, else LABTUI_GRADER_KEY_FILE's content, else
    /etc/labtui/grader.key if it exists; None when there is none (the chain is then unsealed)."""
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        return env[KEY_ENV].encode()
    for path in (env.get(KEY_FILE_ENV), DEFAULT_KEY_FILE):
        if path and os.path.isfile(path):
            return read_key_file(path)
    return None


# ---- writing ---------------------------------------------------------------------------------------

def _tail(fd: int) -> bytes:
    """The file's last line (with its newline); b"" for an empty file."""
    size = os.lseek(fd, 0, os.SEEK_END)
    chunk = TAIL_CHUNK
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        body = data[:-1] if data.endswith(b"\n") else data
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return data[cut + 1:]
        chunk *= 4


class Writer:
    """Appends entries to one transcript file, keeping the chain (and the seal, with a key)."""

    def __init__(self, path: Path | str, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.key = key

    @classmethod
    def create(cls, path: Path | str, header: dict, key: bytes | None = None) -> Writer:
        """A new transcript whose first line is the header (exclusive create: never overwrite)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        w = cls(path, key)
        w.append({"type": "header", "format": FORMAT, **header})
        return w

    def append(self, *entries: dict) -> None:
        """Chain and write entries (one write(2)), resealing at the end when a key is set."""
        if not entries:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            n, prev, end = self._position(fd)
            out = []
            for e in entries:
                line = _dumps({"type": e["type"], "n": n, "prev": prev,
                               **{k: v for k, v in e.items() if k not in ("type", "n", "prev")}})
                out.append(line + b"\n")
                prev = sha(line)
                n += 1
            if self.key is not None:
                out.append(_dumps({"type": "seal", "n": n, "prev": prev, "hmac": seal_hmac(self.key, prev)}) + b"\n")
            os.ftruncate(fd, end)  # drops the old seal: the new lines go where it stood
            os.pwrite(fd, b"".join(out), end)
        finally:
            os.close(fd)  # closing lets go of the flock

    def _position(self, fd: int) -> tuple[int, str | None, int]:
        """(the next line's n, its prev, the offset to write at): after the last entry, the
        seal (if any) being overwritten."""
        size = os.lseek(fd, 0, os.SEEK_END)
        last = _tail(fd)
        if not last:
            return 1, None, 0
        if not last.endswith(b"\n"):
            raise TranscriptError(self.path, -1, "the last line is incomplete (truncated); not appending")
        try:
            rec = json.loads(last)
            int(rec["n"])
        except (ValueError, KeyError, TypeError):
            raise TranscriptError(self.path, -1, "the last line is not a transcript entry (edited?); "
                                                 "not appending") from None
        if rec.get("type") == "seal":
            return int(rec["n"]), rec["prev"], size - len(last)
        return int(rec["n"]) + 1, sha(last), size


# ---- reading and verifying ----------------------------------------------------------------------------

class Transcript:
    """A verified transcript. (A plain class: dataclasses costs ~6 ms to import, and this module
    is imported by every command of a student's session, through lessons.recorder.)"""

    def __init__(self, path: Path, header: dict, entries: list[dict], sealed: bool = False) -> None:
        self.path = path
        self.header = header
        self.entries = entries  # every line after the header, seal excluded
        self.sealed = sealed  # ends with a seal line
        self.seal_checked = False  # ... verified with the grader's key

    @property
    def student(self) -> str:
        return str(self.header.get("student") or "")

    @property
    def lesson(self) -> str:
        return str(self.header.get("lesson") or "")

    def last_evaluation(self) -> dict | None:
        for e in reversed(self.entries):
            if e["type"] == "evaluation":
                return e.get("results")
        return None


def verify(path: Path | str, key: bytes | None = None) -> Transcript:
    """Read a transcript and check its chain (and its seal, with a key); TranscriptError names
    the first line that breaks it: edited, reordered, removed, truncated, or sealed otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TranscriptError(path, 0, f"cannot read: {e.strerror}") from None
    if not data:
        raise TranscriptError(path, 1, "the file is empty")
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise TranscriptError(path, len(lines), "truncated: the last line is incomplete")
    lines.pop()
    recs = [_parse(path, i, line) for i, line in enumerate(lines, 1)]
    for i, rec in enumerate(recs, 1):
        _check_link(path, i, rec, lines, recs)
    header = recs[0]
    if header["type"] != "header":
        raise TranscriptError(path, 1, f"the first line is a {header['type']!r} entry, not the header")
    if header.get("format") != FORMAT:
        raise TranscriptError(path, 1, f"unknown format {header.get('format')!r} (expected {FORMAT})")
    sealed = recs[-1]["type"] == "seal" and len(recs) > 1
    t = Transcript(path, header, [r for r in recs[1:] if r["type"] != "seal"], sealed)
    if key is not None:
        if not sealed:
            raise TranscriptError(path, len(recs) + 1, "no seal after the last line: the transcript was "
                                                        "truncated, or written without the grader key")
        seal = recs[-1].get("hmac")
        # compare_digest raises TypeError on a non-str: an edited seal is a bad seal, not a crash.
        if not isinstance(seal, str) or not seal.isascii() or not hmac.compare_digest(
                seal, seal_hmac(key, recs[-1]["prev"])):
            raise TranscriptError(path, len(recs), "the seal does not match the grader key: sealed with "
                                                   "another key, or the lines before it were rewritten")
        t.seal_checked = True
    return t


def _parse(path: Path, i: int, line: bytes) -> dict:
    try:
        rec = json.loads(line)
    except ValueError:
        raise TranscriptError(path, i, "not a JSON line (edited?)") from None
    if not isinstance(rec, dict) or rec.get("type") not in TYPES:
        kind = rec.get("type") if isinstance(rec, dict) else None
        raise TranscriptError(path, i, f"not a transcript entry (type {kind!r})")
    return rec


def _check_link(path: Path, i: int, rec: dict, lines: list[bytes], recs: list[dict]) -> None:
    """Line i's place in the chain: its number, then the hash of the line before it."""
    n = rec.get("n")
    if n != i:
        moved = next((j for j, r in enumerate(recs, 1) if r.get("n") == i), None)
        if moved is not None:
            what = f"entry {n} stands here: lines were reordered (entry {i} is at line {moved})"
        elif isinstance(n, int) and n > i:
            what = (f"entry {n} stands here: line {i} was removed" if n == i + 1
                    else f"entry {n} stands here: lines {i}-{n - 1} were removed")
        else:
            what = f"entry {n} stands here: lines were duplicated or reordered"
        raise TranscriptError(path, i, what)
    if i == 1:
        if rec.get("prev") is not None:
            raise TranscriptError(path, 1, "the header does not start a chain (prev is set): lines before it removed?")
        return
    if rec.get("prev") != sha(lines[i - 2]):
        raise TranscriptError(path, i - 1, f"edited: its SHA-256 is not the one line {i} recorded")
    if rec["type"] == "header":
        raise TranscriptError(path, i, "a second header")
    if rec["type"] == "seal" and i != len(recs):
        raise TranscriptError(path, i, "a seal before the last line: lines were appended after sealing")
