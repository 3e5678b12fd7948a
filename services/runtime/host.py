"""Where this process runs: its advertised address, node, memory and GPUs, under Ray or as a plain process.

Ray is optional here: a service or orchestrator started as a plain process (`specdec service`, `specdec
orchestrator`, no Ray installed) answers from the operating system instead: the host's own IP, and the
GPUs named in CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
import socket


def _ray():
    """The ray module when this process is part of a Ray cluster; None otherwise (or without Ray installed)."""
    try:
        import ray
    except ImportError:
        return None
    return ray if ray.is_initialized() else None


def node_ip() -> str:
    """This node's IP: Ray's view of it, else the address of the interface that routes outwards."""
    ray = _ray()
    if ray is not None:
        return ray.util.get_node_ip_address()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: selects a route, sends nothing
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def advertised_host(bind_host: str) -> str:
    """The host clients should dial: the node's IP when bound to every interface."""
    return node_ip() if bind_host in ("0.0.0.0", "::", "") else bind_host


def where() -> dict:
    """The Ray node and process this code runs in (node id empty outside Ray), and its resident memory."""
    ray = _ray()
    node = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": node_ip()} if ray else \
        {"node_id": "", "node_ip": "127.0.0.1"}
    return node | {"pid": os.getpid(), "rss_bytes": resident_bytes()}


def gpu_ids() -> list[str]:
    """The GPUs this process was given: Ray's assignment, else CUDA_VISIBLE_DEVICES (empty: none named)."""
    ray = _ray()
    if ray is not None:
        return [str(gpu) for gpu in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 where that is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
