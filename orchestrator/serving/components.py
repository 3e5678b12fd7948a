"""The model services of a deployment, built from the serve config the same way on Ray (`launch.py`) and
as plain processes (`processes.py`)."""

from __future__ import annotations

from specdec.config import ServeConfig, resolve_model
from specdec.net.rpc import RpcLimits
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor

SERVICE_CLASSES = {"draft": DraftServiceActor, "target": TargetServiceActor}


def rpc_limits(config: ServeConfig) -> RpcLimits:
    return RpcLimits(config.limits.max_message_bytes, config.limits.rpc_timeout_s)


def service_arguments(config: ServeConfig, role: str, cpus: int, gpus: float, host: str | None = None,
                      port: int = 0) -> dict:
    """The keyword arguments of the `role` ("draft" or "target") service's class: its model as the config
    says, on `cpus` CPUs (its torch threads) and `gpus` GPUs, bound to host:port (default: placement.host,
    any free port). A service of several whole GPUs spreads its model's layers over them."""
    model = getattr(config, role)
    spec = LoadSpec(resolve_model(model.model), model.dtype, model.device, model.forward, max(1, int(gpus)),
                    model.compile, model.kind)
    return {"spec": spec,
            "host": config.placement.host if host is None else host, "port": port, "threads": cpus,
            "limits": rpc_limits(config), "max_batch": model.max_batch,
            "max_batch_tokens": model.max_batch_tokens, "max_sessions": config.limits.max_sessions,
            "session_idle_s": config.limits.session_idle_s, "tls": config.tls, "gpu_share": gpus}
