"""The container's environment: image Env, then -e, then docker's defaults (PATH, TERM with -t)."""

from engine.spec import merge_env


def test_later_values_win_and_path_defaults():
    env = merge_env(["A=1", "PATH=/img/bin"], ["A=2", "B=3"])
    assert env == ["A=2", "PATH=/img/bin", "B=3"]
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in merge_env([], []))


def test_tty_sets_term_xterm_unless_given():
    assert "TERM=xterm" in merge_env([], [], tty=True)
    assert not any(e.startswith("TERM=") for e in merge_env([], []))
    assert "TERM=vt100" in merge_env([], ["TERM=vt100"], tty=True)
