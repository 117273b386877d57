"""The run/create spec: random flag combinations parse and validate into RunOptions, or are
refused with InvalidArgument (exit 125); never another exception. The validation is create's
own, up to the first thing it writes (engine.api.create); the root test creates for real."""

from __future__ import annotations

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from engine import spec
from engine.errors import EngineError, InvalidArgument
from labtui.common import runopts
from tests.fuzz.argv import examples, run_argv


def validate_like_create(opts: spec.RunOptions) -> None:
    """engine.api.create's checks before anything exists, without its network (fuzzed apart)."""
    from engine import hooks

    if opts.name:
        spec.validate_name(opts.name)
    for v in opts.volumes:
        spec.parse_volume(v)
    spec.parse_env(opts.env)
    spec.validate_tmpfs(opts.tmpfs)
    if opts.hostname:
        spec.validate_hostname(opts.hostname)
    hooks.validate({k: v for k, v in opts.extra.items() if v not in (None, [], "")})


@settings(max_examples=examples(500))
@given(run_argv())
@example(argv=["--security-opt=--", "zzfz"])  # found: argparse handed the engine [] for "--"
@example(argv=["--name=--", "--cap-add=--", "--device=--", "--restart=--", "-m=--", "zzfz"])
def test_run_spec_is_valid_or_invalid_argument(argv):
    try:
        opts = runopts.parse(argv)
        validate_like_create(opts)
        event("valid")
    except InvalidArgument as e:
        assert str(e).strip(), argv
        event("refused: " + str(e).split("'")[0][:40])
    except EngineError as e:  # NotFound of a seccomp profile file is the only other
        assert "seccomp" in str(e), (argv, e)


@settings(max_examples=examples(100))
@given(st.lists(st.text(max_size=10), max_size=6))
def test_random_words_are_valid_or_invalid_argument(argv):
    try:
        validate_like_create(runopts.parse(argv))
    except InvalidArgument:
        pass
