"""Seccomp profiles (engine.seccomp): random JSON structures are either refused with
InvalidArgument or become a filter; never another exception (docs/security.md)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidArgument
from engine.seccomp import filter as sfilter
from engine.seccomp import profile as sprofile
from tests.fuzz.argv import examples

ACTIONS = list(sprofile.ACTIONS)
OPS = list(sprofile.OPS)
SYSCALLS = ["read", "write", "mkdir", "chmod", "ptrace", "nosuchcall", "", "clone", "personality"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                                          inner, max_size=3),
                    max_leaves=8)


def maybe(strategy):
    """The right kind of value most of the time, junk sometimes: gets past the first checks."""
    return st.one_of(strategy, strategy, strategy, junk)


arg = st.fixed_dictionaries({"index": maybe(st.integers(-1, 7)), "op": maybe(st.sampled_from(OPS))},
                            optional={"value": maybe(st.integers(-1, 2**64 + 1)),
                                      "valueTwo": maybe(st.integers(-1, 2**64 + 1))})
filt = st.fixed_dictionaries({}, optional={
    "caps": maybe(st.lists(st.sampled_from(["CAP_SYS_ADMIN", "SYS_PTRACE", "NOPE", "all"]), max_size=2)),
    "arches": maybe(st.lists(st.sampled_from(["amd64", "arm64", "x86", "s390x"]), max_size=2)),
    "minKernel": maybe(st.sampled_from(["4.8", "6.1", "99.0", "x", "", "5", "5.x.1"]))})
syscall = st.fixed_dictionaries(
    {"names": maybe(st.lists(st.sampled_from(SYSCALLS), max_size=3)), "action": maybe(st.sampled_from(ACTIONS))},
    optional={"errnoRet": maybe(st.integers(-5, 5000)), "args": maybe(st.lists(arg, max_size=2)),
              "includes": maybe(filt), "excludes": maybe(filt), "name": maybe(st.sampled_from(SYSCALLS))})
profiles = st.one_of(junk, st.fixed_dictionaries(
    {"defaultAction": maybe(st.sampled_from(ACTIONS))},
    optional={"defaultErrnoRet": maybe(st.integers(-5, 5000)),
              "architectures": maybe(st.lists(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_NOPE"]),
                                              max_size=2)),
              "archMap": maybe(st.lists(st.fixed_dictionaries(
                  {"architecture": maybe(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]))},
                  optional={"subArchitectures": maybe(st.lists(st.sampled_from(["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
                                                               max_size=2))}), max_size=2)),
              "syscalls": maybe(st.lists(syscall, max_size=4))}))


def _filter_of(obj: object, backend: object) -> sfilter.Filter | None:
    """The whole path of a profile: validate, resolve for a set of caps, build with the given
    backend (nothing is loaded into this process)."""
    prof = sprofile.validate_profile(obj, "fuzz.json")
    plan = sprofile.resolve(prof, ["CAP_CHOWN", "CAP_SYS_ADMIN"])
    return sfilter.build(plan, backend=backend)


def _libseccomp() -> object:
    try:
        return sfilter.LibseccompBackend()
    except ImportError:
        pytest.skip("libseccomp's Python binding is not installed")


FOUND = [  # what fuzzing found once (tracebacks before engine/seccomp/profile.py checked item types)
    {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [None]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": {"0": None}, "action": None}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "includes": {"arches": [None]}}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "excludes": {"caps": [None]}}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "includes": {"minKernel": 5}}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                                     "subArchitectures": [1]}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": 1.0}]},
    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1},  # libseccomp: "Library error"
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                      "errnoRet": 70000}]},
]


@pytest.mark.parametrize("obj", FOUND)
def test_found_profiles_are_refused(obj):
    with pytest.raises(InvalidArgument):
        _filter_of(obj, sfilter.RecordingBackend())
    with pytest.raises(InvalidArgument):
        _filter_of(obj, _libseccomp())


@settings(max_examples=examples(400))
@given(profiles)
def test_profile_is_a_filter_or_invalid_argument(obj):
    try:
        _filter_of(obj, sfilter.RecordingBackend())
    except InvalidArgument as e:
        assert str(e).startswith(("invalid seccomp profile fuzz.json", "seccomp:")), e


@settings(max_examples=examples(150))
@given(profiles)
def test_profile_compiles_with_libseccomp_or_invalid_argument(obj):
    """The same through the real libseccomp, compiled to BPF (what a container would load)."""
    backend = _libseccomp()
    try:
        flt = _filter_of(obj, backend)
    except InvalidArgument as e:
        assert str(e).startswith(("invalid seccomp profile fuzz.json", "seccomp:")), e
    else:
        assert backend.export("bpf"), flt


@settings(max_examples=examples(60))
@given(profiles)
def test_profile_file_is_a_filter_or_invalid_argument(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("sc") / "p.json"
    path.write_text(json.dumps(obj, allow_nan=True))
    try:
        sprofile.load_profile_file(str(path))
    except InvalidArgument as e:
        assert str(path) in str(e)


@pytest.mark.parametrize("text", ["", "{", "[1,", "\x00", "NaN", '{"defaultAction": "SCMP_ACT_ALLOW"'])
def test_profile_file_not_json(tmp_path, text):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(InvalidArgument):
        sprofile.load_profile_file(str(path))
