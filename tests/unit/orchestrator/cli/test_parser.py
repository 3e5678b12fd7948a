"""The `specdec` parser: every command of every group is there, parses its arguments and reaches its handler."""

from __future__ import annotations

import pytest

from specdec.orchestrator.cli import deployment, generate, jobs, measure
from specdec.orchestrator.cli.main import build_parser

COMMANDS = {
    "serve": (deployment, []), "status": (deployment, []), "stop": (deployment, []), "certs": (deployment, []),
    "generate": (generate, ["def f():"]),
    "submit": (jobs, ["requests.jsonl"]), "jobs": (jobs, []), "results": (jobs, ["job-1"]), "cancel": (jobs, ["job-1"]),
    "demo": (measure, []), "bench": (measure, []), "loadtest": (measure, []),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_reaches_the_handler_beside_its_parser(command):
    group, positional = COMMANDS[command]
    args = build_parser().parse_args([command, *positional])
    assert args.func.__module__ == group.__name__
    assert args.func is getattr(group, f"cmd_{command}")


def test_the_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {command}" in listed for command in COMMANDS)


def test_a_bad_value_names_the_option(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["generate", "x", "--temperature", "warm"])
    assert exited.value.code == 2 and "--temperature" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["generate", "x", "--num-drafts", "3"], 3),
    (["bench", "--num-drafts", "2", "4"], [2, 4]),
])
def test_the_deprecated_num_drafts_option_sets_m_with_a_warning(argv, expected):
    with pytest.warns(FutureWarning, match="num_drafts is deprecated: it is now num_draft_sequences"):
        assert build_parser().parse_args(argv).num_draft_sequences == expected
