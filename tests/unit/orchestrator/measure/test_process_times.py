"""Where the cores go: processes grouped by role from their command lines, and shares of a core between two
snapshots; and a snapshot of this very machine finds this process."""

from __future__ import annotations

import os

import pytest

from specdec.orchestrator.measure.process_times import THIS_PROCESS, core_shares, role_of, snapshot


@pytest.mark.parametrize("command_line, role", [
    ("ray::DraftServiceActor", "draft"),
    ("/venv/bin/python -m specdec.orchestrator.cli service target --config /tmp/x/serve.yaml", "target"),
    ("ray::OrchestratorActor.generate", "orchestrator"),
    ("/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --raylet_socket_name=...", "ray daemons"),
    ("/usr/bin/python3 some_other_program.py", None),
])
def test_processes_are_grouped_by_their_role(command_line: str, role: str | None) -> None:
    assert role_of(command_line, 7, own_pid=1) == role
    assert role_of(command_line, 1, own_pid=1) == THIS_PROCESS


def test_shares_of_a_core_between_two_snapshots() -> None:
    before = {10: ("ray::DraftServiceActor", 5.0), 11: ("ray::TargetServiceActor", 2.0), 12: ("bash", 1.0)}
    after = {10: ("ray::DraftServiceActor", 6.0), 11: ("ray::TargetServiceActor", 3.5), 12: ("bash", 9.0),
             13: ("ray::TargetServiceActor", 0.5)}  # a replica started in between counts from zero
    assert core_shares(before, after, 2.0, own_pid=99) == {"draft": 0.5, "target": 1.0}
    assert core_shares(before, after, 0.0, own_pid=99) == {}


def test_a_snapshot_of_this_machine_finds_this_process() -> None:
    mine = snapshot()
    if not mine:
        pytest.skip("no /proc on this system: nothing to read process times from")
    command_line, seconds = mine[os.getpid()]
    assert "pytest" in command_line or "python" in command_line
    assert seconds > 0
