"""Where the cores go during a measurement: each process's CPU time on this machine, grouped by its role in a
local deployment (draft, target, orchestrator, Ray's own daemons, the measuring process itself), as a share
of one core over the measurement's wall time.

Reads /proc (Linux); elsewhere it has nothing to report. `role_of` is a pure function of a process's command
line; `core_shares` of two snapshots.
"""

from __future__ import annotations

import os
from pathlib import Path

ROLES = (  # role, the command-line fragments that name it (Ray actors, `specdec service|orchestrator` processes)
    ("draft", ("ray::DraftServiceActor", "specdec.orchestrator.cli service draft")),
    ("target", ("ray::TargetServiceActor", "specdec.orchestrator.cli service target")),
    ("orchestrator", ("ray::OrchestratorActor", "specdec.orchestrator.cli orchestrator")),
    ("ray daemons", ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env",
                     "ray::IDLE", "default_worker.py")),
)
THIS_PROCESS = "this process (client)"
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def role_of(command_line: str, pid: int, own_pid: int) -> str | None:
    """The role of a process by its command line; None for a process of no role (not counted)."""
    if pid == own_pid:
        return THIS_PROCESS
    return next((role for role, fragments in ROLES if any(f in command_line for f in fragments)), None)


def snapshot(proc: Path = Path("/proc")) -> dict[int, tuple[str, float]]:
    """pid -> (command line, CPU seconds so far: user + system) of every process it can read."""
    out = {}
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry.name)] = (command_line, (int(fields[11]) + int(fields[12])) / TICKS)
    return out


def core_shares(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall_seconds: float,
                own_pid: int) -> dict[str, float]:
    """Per role: CPU seconds spent between the snapshots over the wall time (1.0 = one core busy throughout).
    A process that started in between counts from zero."""
    shares: dict[str, float] = {}
    if wall_seconds <= 0:
        return shares
    for pid, (command_line, seconds) in after.items():
        role = role_of(command_line, pid, own_pid)
        if role is None:
            continue
        spent = seconds - before.get(pid, (command_line, 0.0))[1]
        shares[role] = shares.get(role, 0.0) + max(spent, 0.0) / wall_seconds
    return shares
