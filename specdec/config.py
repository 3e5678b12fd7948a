"""The serve config: which models, where they run, and the server's defaults and limits.

Loaded from YAML (see deploy/demo.yaml, which spells out every key). Unknown keys are errors that name
the key. `demo:target` and `demo:draft` name the project's own demo pair shipped with the package.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specdec.net.security import TlsFiles
from specdec.renamed import CONFIG_KEYS, current_names

DEMO_PAIR_DIR = Path(__file__).resolve().parent.parent / "demo_pair"
FORWARDS = ("auto", "transformers")  # draft.forward, target.forward (`specdec.services.runtime.lean_forward`)
DTYPE_NAMES = ("float32", "float16", "bfloat16")  # draft.dtype, target.dtype
DRAFT_KINDS = ("auto", "model", "head")  # draft.kind
COMPILE_MODES = ("off", "default", "reduce-overhead")  # draft.compile, target.compile (torch.compile, lean forward)
STRATEGIES = ("PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD")
ACCELERATORS = ("auto", "gpu", "cpu")


def resolve_model(name: str) -> str:
    """`demo:target` / `demo:draft` -> the shipped checkpoint folder; anything else unchanged."""
    if name.startswith("demo:"):
        return str(DEMO_PAIR_DIR / name.removeprefix("demo:"))
    return name


@dataclass(frozen=True)
class ModelConfig:
    model: str
    dtype: str = "float32"
    device: str = "auto"
    max_batch: int = 64  # calls of different sessions batched into one forward, at most
    # tokens one forward feeds, about (vLLM's max_num_batched_tokens): past it, prompts are prefilled in chunks
    # between the other requests' forwards instead of stalling them
    max_batch_tokens: int = 256
    forward: str = "auto"  # auto: the runtime's lean forward for Llama-family models; transformers: never
    compile: str = "off"  # the lean forward's dense math through torch.compile: off | default | reduce-overhead
    # draft: "model" (a causal LM of its own), "head" (a feature head reading the target's hidden states,
    # `specdec distill --kind head`), or "auto" (a head where the folder holds one)
    kind: str = "auto"
    # GPUs each replica of this model reserves: None lets placement.accelerator decide; a fraction below 1
    # shares one GPU (and caps the service's share of its memory); a whole number above 1 spans GPUs.
    num_gpus: float | None = None
    num_cpus: int | None = None  # CPUs each replica reserves (and torch threads); None: placement.cpus_per_service


@dataclass(frozen=True)
class PlacementConfig:
    strategy: str = "PACK"  # PACK: one node if it fits; STRICT_SPREAD: draft and target on different nodes
    accelerator: str = "auto"  # auto: the fastest layout the cluster's GPUs allow (orchestrator/serving/placement.py)
    cpus_per_service: int = 1  # CPUs per service (and torch threads), unless its model sets num_cpus
    host: str = "127.0.0.1"  # services bind here; 0.0.0.0 for multi-node clusters
    draft_replicas: int = 1  # draft services
    target_replicas: int = 1  # target services; target i pairs with draft i mod draft_replicas
    # Custom Ray resources each service reserves besides CPUs/GPUs, e.g. {"draft_node": 1} to pin services
    # to nodes started with `ray start --resources='{"draft_node": 1}'`.
    resources: dict[str, float] = field(default_factory=dict)
    max_restarts: int = -1  # times Ray restarts a crashed service (-1: always, 0: never)


@dataclass(frozen=True)
class OrchestratorConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 picks a free port
    token_file: str = ""  # a file holding the bearer token the client API requires (empty: no token)
    name: str = "specdec-orchestrator"
    namespace: str = "specdec"
    num_cpus: float = 0.0
    max_restarts: int = -1  # Ray restarts a crashed orchestrator this many times (-1: always); jobs resume


@dataclass(frozen=True)
class HttpConfig:
    """The OpenAI-compatible HTTP API beside the gRPC one. It serves TLS with the `tls` section's cert and key
    when they are set, and requires the bearer token of `orchestrator.token_file` when that is set."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port
    served_model_name: str = ""  # the model id clients send and /v1/models lists; empty: target.model


@dataclass(frozen=True)
class JobsConfig:
    journal_path: str = ""  # SQLite journal on the head node; empty: ~/.specdec/<orchestrator.name>-jobs.sqlite
    concurrency: int = 8  # job items in flight at once, over all jobs
    max_attempts: int = 3  # tries of an item when a model service fails or the orchestrator is full

    def resolved_path(self, orchestrator_name: str) -> Path:
        path = self.journal_path or f"~/.specdec/{orchestrator_name}-jobs.sqlite"
        return Path(path).expanduser()


OVERLAP_MODES = (True, False, "auto")


@dataclass(frozen=True)
class DefaultsConfig:
    rule: str = "sd"
    gamma: int = 4
    gamma_controller: str = "cost"  # with load_governor: speculation only where it measures faster
    max_new_tokens: int = 128
    # Draft ahead for the likeliest outcomes while the target verifies: true, false, or auto (greedy requests
    # draft ahead round by round while it measures faster than serial rounds; sampled requests run serial, so
    # that a seed gives the same output).
    overlap: bool | str = "auto"
    speculation_lanes: int = 8  # overlapped mode: rejection outcomes drafted ahead for, at most, a round
    load_governor: bool = True  # `cost` requests go target-only while that gives more aggregate tokens/s
    # Requests that leave gamma unset decode target-only while this many or more are in flight (0: never);
    # vLLM's speculative_config.disable_by_batch_size.
    disable_by_batch_size: int = 0


@dataclass(frozen=True)
class LimitsConfig:
    max_new_tokens: int = 4096
    max_gamma: int = 32
    max_draft_sequences: int = 8
    max_speculation_lanes: int = 8
    max_prompt_chars: int = 1_000_000
    rpc_timeout_s: float = 30.0  # deadline of every call between services; a service past it is treated as down
    recovery_timeout_s: float = 120.0  # how long requests wait for a failed target to come back before failing
    max_message_bytes: int = 64 * 1024 * 1024
    max_active_requests: int = 256  # requests in flight at the orchestrator; more wait in its queue
    max_waiting_requests: int = 1024  # requests waiting for a place, first come first served; more: RESOURCE_EXHAUSTED
    max_sessions: int = 4096  # sessions per model service; a new one beyond gets RESOURCE_EXHAUSTED
    session_idle_s: float = 600.0  # a service ends a session unused this long (0: never)
    max_job_items: int = 100_000  # requests in one batch job


@dataclass(frozen=True)
class ServeConfig:
    draft: ModelConfig = field(default_factory=lambda: ModelConfig("demo:draft"))
    target: ModelConfig = field(default_factory=lambda: ModelConfig("demo:target"))
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    tls: TlsFiles = field(default_factory=TlsFiles)  # PEM files; empty: plaintext (loopback development)

    def __post_init__(self) -> None:
        for side, model in (("draft", self.draft), ("target", self.target)):
            if model.forward not in FORWARDS:
                raise ValueError(f"{side}.forward: must be one of {FORWARDS}, got {model.forward!r}")
            if model.dtype not in DTYPE_NAMES:
                raise ValueError(f"{side}.dtype: must be one of {DTYPE_NAMES}, got {model.dtype!r}")
            if model.compile not in COMPILE_MODES:
                raise ValueError(f"{side}.compile: must be one of {COMPILE_MODES}, got {model.compile!r}")
            kinds = DRAFT_KINDS if side == "draft" else ("auto", "model")
            if model.kind not in kinds:
                raise ValueError(f"{side}.kind: must be one of {kinds}, got {model.kind!r}")
            gpus = model.num_gpus
            if gpus is not None and not (isinstance(gpus, int | float) and math.isfinite(gpus) and gpus >= 0):
                raise ValueError(f"{side}.num_gpus: must be a number >= 0 (or unset), got {gpus!r}")
            if gpus is not None and gpus > 1 and gpus != int(gpus):
                raise ValueError(f"{side}.num_gpus: above 1 a service spans whole GPUs, got {gpus}")
            if model.max_batch < 1 or model.max_batch_tokens < 1:
                raise ValueError(f"{side}.max_batch and {side}.max_batch_tokens: must be >= 1, got "
                                 f"{model.max_batch} and {model.max_batch_tokens}")
            if model.num_cpus is not None and model.num_cpus < 1:
                raise ValueError(f"{side}.num_cpus: must be >= 1 (or unset), got {model.num_cpus}")
        if self.placement.strategy not in STRATEGIES:
            raise ValueError(f"placement.strategy: must be one of {STRATEGIES}, got {self.placement.strategy!r}")
        if self.placement.accelerator not in ACCELERATORS:
            raise ValueError(f"placement.accelerator: must be one of {ACCELERATORS}, "
                             f"got {self.placement.accelerator!r}")
        if self.placement.draft_replicas < 1 or self.placement.target_replicas < self.placement.draft_replicas:
            raise ValueError("placement.target_replicas: need 1 <= draft_replicas <= target_replicas")
        if self.placement.cpus_per_service < 1:
            raise ValueError("placement.cpus_per_service: must be >= 1")
        if not 0 <= self.defaults.gamma <= self.limits.max_gamma:
            raise ValueError(f"defaults.gamma: must be in [0, limits.max_gamma={self.limits.max_gamma}]")
        if self.defaults.overlap not in OVERLAP_MODES:
            raise ValueError(f"defaults.overlap: must be true, false or auto, got {self.defaults.overlap!r}")
        if not 0 <= self.defaults.speculation_lanes <= self.limits.max_speculation_lanes:
            raise ValueError("defaults.speculation_lanes: must be in [0, limits.max_speculation_lanes]")
        if self.limits.rpc_timeout_s <= 0 or self.limits.recovery_timeout_s <= 0:
            raise ValueError("limits: rpc_timeout_s and recovery_timeout_s must be > 0")
        if self.placement.max_restarts < -1:
            raise ValueError("placement.max_restarts: must be -1 (always), 0 (never) or a positive count")
        if self.limits.max_active_requests < 1 or self.limits.max_sessions < 1 or self.limits.session_idle_s < 0:
            raise ValueError("limits: max_active_requests and max_sessions must be >= 1, session_idle_s >= 0")
        if self.limits.max_waiting_requests < 0:
            raise ValueError("limits.max_waiting_requests: must be >= 0 (0: refuse at max_active_requests)")
        if not 1 <= self.defaults.max_new_tokens <= self.limits.max_new_tokens:
            raise ValueError("defaults.max_new_tokens: must be in [1, limits.max_new_tokens]")
        if self.limits.max_job_items < 1:
            raise ValueError("limits.max_job_items: must be >= 1")
        if self.jobs.concurrency < 1 or self.jobs.max_attempts < 1:
            raise ValueError("jobs: concurrency and max_attempts must be >= 1")
        if self.orchestrator.max_restarts < -1:
            raise ValueError("orchestrator.max_restarts: must be >= -1 (-1: restart always)")
        if self.defaults.disable_by_batch_size < 0:
            raise ValueError("defaults.disable_by_batch_size: must be >= 0 (0: never)")
        if not 0 <= self.http.port <= 65535:
            raise ValueError(f"http.port: must be in [0, 65535], got {self.http.port}")

    @property
    def served_model_name(self) -> str:
        """The model id of the HTTP API: http.served_model_name, else the target's model as configured."""
        return self.http.served_model_name or self.target.model

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ServeConfig:
        return _build(cls, raw or {}, "")

    @classmethod
    def load(cls, path: str | Path | None) -> ServeConfig:
        if path is None:
            return cls()
        return cls.from_dict(yaml.safe_load(Path(path).read_text()))

    def with_overrides(self, **sections: dict[str, Any]) -> ServeConfig:
        """A copy with some keys of some sections replaced, e.g. with_overrides(orchestrator={"port": 0})."""
        return dataclasses.replace(self, **{name: dataclasses.replace(getattr(self, name), **values)
                                            for name, values in sections.items()})


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'config'}: expected a mapping")
    raw = current_names(raw, CONFIG_KEYS.get(prefix.rstrip("."), {}), prefix)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    values = {}
    for name, value in raw.items():
        kind = fields[name].type
        sections = (ModelConfig, PlacementConfig, OrchestratorConfig, DefaultsConfig, LimitsConfig, JobsConfig,
                    HttpConfig, TlsFiles)
        nested = {section.__name__: section for section in sections}.get(
            kind if isinstance(kind, str) else kind.__name__)
        values[name] = _build(nested, value, f"{prefix}{name}.") if nested else value
    return cls(**values)
