"""Reading the reports in docs/ the way their tests need: the error entries of COMMON_ERRORS.md,
the tests FAILURE_CASES.md names, the commands of QUICK_REFERENCE.md.

Used by tests/unit/test_reports.py (structure, no root) and the root tests that run what the
documents say (tests/integration/test_common_errors_root.py).
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REPORTS = ("DESIGN_REPORT.md", "COMPARATIVE_ANALYSIS.md", "FAILURE_CASES.md", "IMPLEMENTATION_NOTES.md",
           "QUICK_REFERENCE.md", "COMMON_ERRORS.md")


# ---- COMMON_ERRORS.md --------------------------------------------------------------------------

ERROR_RE = re.compile(r"<!-- error: (?P<id>[a-z0-9-]+)(?P<opts>[^>]*?) -->\n```console\n(?P<body>.*?)\n```", re.S)


@dataclass
class Command:
    """One `$` line: as root (`sudo [VAR=value ...] labtui ...`), as a user (`labtui ...`), or
    anything else (which only a recipe of the test can run)."""

    line: str
    argv: list[str] = field(default_factory=list)  # labtui's arguments
    env: dict[str, str] = field(default_factory=dict)
    root: bool = True
    labtui: bool = False


@dataclass
class ErrorEntry:
    id: str
    exit: int
    recipe: bool
    commands: list[Command]
    expected: list[str]  # the output lines of the last command, `<...>` standing for anything

    def patterns(self, subst: dict[str, str] | None = None) -> list[re.Pattern]:
        return [line_pattern(line, subst) for line in self.expected]


def parse_command(line: str) -> Command:
    words = shlex.split(line, comments=True)
    cmd = Command(line)
    if words and words[0] == "sudo":
        words = words[1:]
    else:
        cmd.root = False
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        k, _, v = words.pop(0).partition("=")
        cmd.env[k] = v
    if words and words[0] == "labtui":
        cmd.labtui = True
        cmd.argv = words[1:]
    return cmd


def error_entries(text: str | None = None) -> list[ErrorEntry]:
    text = (DOCS / "COMMON_ERRORS.md").read_text() if text is None else text
    out = []
    for m in ERROR_RE.finditer(text):
        opts = m.group("opts").split()
        exit_code = next((int(o.split("=", 1)[1]) for o in opts if o.startswith("exit=")), None)
        if exit_code is None:
            raise ValueError(f"error entry {m.group('id')}: no exit=N")
        cmds, expected = [], []
        for line in m.group("body").splitlines():
            if line.startswith("$ "):
                if expected:
                    raise ValueError(f"error entry {m.group('id')}: output lines before the last command")
                cmds.append(parse_command(line[2:]))
            elif line.strip():
                expected.append(line)
        out.append(ErrorEntry(m.group("id"), exit_code, "recipe" in opts, cmds, expected))
    return out


def line_pattern(line: str, subst: dict[str, str] | None = None) -> re.Pattern:
    """A documented output line as a regular expression: `<...>` matches anything (at least one
    character), runs of spaces match any run of spaces, the rest is literal."""
    for k, v in (subst or {}).items():
        line = line.replace(k, v)
    parts = re.split(r"(<[^<>\s][^<>]*>)", line.strip())
    rx = ""
    for i, part in enumerate(parts):
        rx += ".+?" if i % 2 else re.sub(r"(?:\\ )+", r"\\s+", re.escape(part))
    return re.compile(rf"^\s*{rx}\s*$")


# ---- FAILURE_CASES.md --------------------------------------------------------------------------

TEST_REF_RE = re.compile(r"`(?P<file>tests/[\w/]+\.py)::(?P<name>test_\w+)(?:\[(?P<param>[^\]]+)\])?`")


@dataclass
class Scenario:
    title: str
    text: str
    tests: list[tuple[str, str, str | None]]  # (file, test name, parameter)


def scenarios(text: str | None = None) -> list[Scenario]:
    """The failure scenarios: each `## N. title` section, with the tests it names."""
    text = (DOCS / "FAILURE_CASES.md").read_text() if text is None else text
    parts = re.split(r"^## (\d+\..*)$", text, flags=re.M)
    out = []
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        refs = [(m.group("file"), m.group("name"), m.group("param")) for m in TEST_REF_RE.finditer(body)]
        out.append(Scenario(title.strip(), body, refs))
    return out


def defined_tests(path: Path) -> dict[str, ast.FunctionDef]:
    """The module-level test functions of a test file, by name."""
    tree = ast.parse(path.read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test_")}


def is_parametrized(fn: ast.FunctionDef) -> bool:
    return any("parametrize" in ast.unparse(d) for d in fn.decorator_list)


# ---- QUICK_REFERENCE.md ------------------------------------------------------------------------

QR_ROW_RE = re.compile(r"^\| `labtui(?P<words>(?: [a-z][a-z-]*)*)[^`]*` \|(?P<flags>(?:[^|\\]|\\.)*)\|", re.M)
FLAG_RE = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def quick_reference_rows(text: str | None = None) -> list[tuple[tuple[str, ...], list[str]]]:
    """(command words, flags named in the flags column) for each `labtui ...` row of the tables."""
    text = (DOCS / "QUICK_REFERENCE.md").read_text() if text is None else text
    return [(tuple(m.group("words").split()), FLAG_RE.findall(m.group("flags")))
            for m in QR_ROW_RE.finditer(text)]
