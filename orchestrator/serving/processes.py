"""The deployment as plain processes, without Ray: one process per model service and one orchestrator.

`specdec service draft|target` and `specdec orchestrator` each run one component on the address given
(containers, systemd units, a GPU machine without Ray), through `serve_until_signalled`. `deploy_processes`
starts a whole deployment on this machine as children running those commands: it places the services on
this machine's GPUs by the plan `specdec serve` uses on Ray (`plan_layout`, then `assign_gpus`), each
child seeing only its own GPUs (CUDA_VISIBLE_DEVICES, empty for a service on CPUs).

What Ray adds and this leaves out: placement over several machines, and restarting a crashed component.
Here a crashed service stays down (requests go on target-only while a draft is down, and wait
`limits.recovery_timeout_s` for a target) until whatever supervises it starts it again on its address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from specdec.config import ServeConfig
from specdec.orchestrator.serving.core import check_defaults
from specdec.orchestrator.serving.placement import Layout, assign_gpus, plan_layout

START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 15.0
SERVICE_ANNOUNCEMENT = "{role} service at "  # what `specdec service` prints once it serves, before its address
ORCHESTRATOR_ANNOUNCEMENT = "orchestrator listening on "
HTTP_ANNOUNCEMENT = "OpenAI-compatible HTTP API at "


async def serve_until_signalled(start: Callable[[], Awaitable[list[str]]], stop: Callable[[], Awaitable[None]]) -> None:
    """Start a component (`start` returns the lines announcing it, printed), serve until SIGTERM or SIGINT,
    then stop it."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        for line in await start():
            print(line, flush=True)
        await stopping.wait()
    finally:
        await stop()


class ChildFailed(RuntimeError):
    """A component that exited, or stayed silent, while starting; the message ends with its log's end."""


@dataclass
class ProcessDeployment:
    """A deployment started by `deploy_processes`: the same addresses as a Ray deployment's, and its children."""

    address: str
    draft_addresses: list[str]
    target_addresses: list[str]
    layout: Layout
    children: list[Child]
    folder: Path  # the config the children read, and their logs
    http_address: str = ""

    def exited(self) -> list[str]:
        """A line for each child that has exited since the last call (a crashed service, say), naming its log."""
        lines = []
        for child in self.children:
            if child.process.poll() is not None and not child.reported:
                child.reported = True
                lines.append(f"{child.describe()} exited with {child.process.returncode}; its log: {child.log}")
        return lines

    def stop(self) -> None:
        """Stop the orchestrator, then the services (SIGTERM, then SIGKILL past STOP_TIMEOUT_S). The logs are
        kept when a child had exited by itself before (its log says why), else removed."""
        crashed = [child for child in self.children if child.process.poll() not in (None, 0)]
        stop_processes([child.process for child in self.children])
        if not crashed:
            shutil.rmtree(self.folder, ignore_errors=True)


def deploy_processes(config: ServeConfig, machine_gpus: int | None = None) -> ProcessDeployment:
    """Start the drafts, the targets and the orchestrator as child processes on this machine, with its GPUs
    (`machine_gpus`, default: those torch sees); return once the orchestrator serves."""
    check_defaults(config.defaults)
    if machine_gpus is None:
        import torch

        machine_gpus = torch.cuda.device_count()
    layout = plan_layout(config, machine_gpus)
    placement = config.placement
    services = [("draft", layout.draft_gpus, layout.draft_cpus)] * placement.draft_replicas
    services += [("target", layout.target_gpus, layout.target_cpus)] * placement.target_replicas
    gpu_sets = assign_gpus([(f"{role}.num_gpus", gpus) for role, gpus, _ in services], machine_gpus)
    folder = Path(tempfile.mkdtemp(prefix="specdec-processes-"))
    config_path = folder / "serve.yaml"
    config_path.write_text(yaml.safe_dump(dataclasses.asdict(config)))
    children: list[Child] = []
    try:
        for index, ((role, gpus, cpus), gpu_ids) in enumerate(zip(services, gpu_sets, strict=True)):
            children.append(Child(["service", role, "--config", str(config_path), "--cpus", str(cpus),
                                   "--gpu-share", f"{gpus:g}"], folder / f"{role}-{index}.log", gpu_ids))
        addresses = [child.announced(SERVICE_ANNOUNCEMENT.format(role=role))
                     for child, (role, _, _) in zip(children, services, strict=True)]
        drafts = placement.draft_replicas
        orchestrator = Child(["orchestrator", "--config", str(config_path), "--draft", *addresses[:drafts],
                              "--target", *addresses[drafts:]], folder / "orchestrator.log", [])
        children.append(orchestrator)
        address = orchestrator.announced(ORCHESTRATOR_ANNOUNCEMENT)
    except BaseException:
        stop_processes([child.process for child in children])
        shutil.rmtree(folder, ignore_errors=True)  # a failed start's log end is in the ChildFailed message
        raise
    http = next((line[len(HTTP_ANNOUNCEMENT):].split("/v1")[0] for line in orchestrator.lines
                 if line.startswith(HTTP_ANNOUNCEMENT)), "")
    return ProcessDeployment(address, addresses[:drafts], addresses[drafts:], layout, children, folder, http)


class Child:
    """A `specdec` command as a child process seeing only `gpu_ids`, its stderr to `log`, its stdout read
    line by line (by a thread, so that it never blocks on a full pipe)."""

    def __init__(self, arguments: list[str], log: Path, gpu_ids: list[int]):
        self.log = log
        env = os.environ | {"CUDA_VISIBLE_DEVICES": visible_devices(gpu_ids), "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen([sys.executable, "-m", "specdec.orchestrator.cli", *arguments], env=env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: list[str] = []
        self.reported = False  # its exit has been reported (`ProcessDeployment.exited`)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def announced(self, prefix: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """What follows `prefix` on the first stdout line that starts with it; RuntimeError with the end of
        the child's log if it exits or stays silent for `timeout_s` first."""
        while True:
            try:
                line = self._lines.get(timeout=timeout_s)
            except queue.Empty:
                raise ChildFailed(f"{self.describe()} did not start within {timeout_s:.0f}s; "
                                   f"{self._log_tail()}") from None
            if line is None:
                raise ChildFailed(f"{self.describe()} exited with {self.process.wait()} while starting; "
                                   f"{self._log_tail()}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line[len(prefix):].split()[0]

    def describe(self) -> str:
        return "`specdec " + " ".join(self.process.args[3:5]) + "`"

    def _log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        return f"the end of its log ({self.log}):\n" + "\n".join(text) if text else "its log is empty"


def visible_devices(gpu_ids: list[int]) -> str:
    """CUDA_VISIBLE_DEVICES for a child given GPUs `gpu_ids` as this process numbers them: the devices this
    process sees itself (its own CUDA_VISIBLE_DEVICES), so that a deployment confined to GPUs 2 and 3
    stays on them; "" (no GPU) for a service on CPUs."""
    own = [device.strip() for device in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if device.strip()]
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return ",".join(map(str, gpu_ids))
    return ",".join(own[index] for index in gpu_ids)


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each, last started first, and wait; SIGKILL what is still running after STOP_TIMEOUT_S."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for process in reversed(processes):
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
