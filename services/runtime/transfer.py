"""Copies between the host and the model's device: through pinned host memory on CUDA, so that a copy to
the device does not hold up the host, and a batch's results come back with one wait however many tensors
they are. On a CPU device these are plain (and free).

PyTorch's caching host allocator serves the pinned blocks and keeps each one until the copies using it
are done, so a block is allocated once and reused, never overwritten under a copy in flight.
"""

from __future__ import annotations

import torch


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; on CUDA through pinned memory, without waiting for the copy."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def to_host(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors on the host, in order: each CUDA tensor copied into pinned memory without blocking, then
    one wait for the devices involved (host tensors are returned as they are)."""
    out, devices = [], set()
    for tensor in tensors:
        if tensor.is_cuda:
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor, non_blocking=True)
            devices.add(tensor.device)
            tensor = host
        out.append(tensor)
    for device in devices:
        torch.cuda.synchronize(device)
    return out
