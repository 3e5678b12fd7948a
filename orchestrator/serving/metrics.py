"""Prometheus metrics of the orchestrator (docs/design.md), each series on two endpoints.

- Ray's: through `ray.util.metrics`, on each node's metrics endpoint with Ray's `ray_` prefix. Ray does
  not take `:` in names, so vLLM's `vllm:x` reads `ray_vllm_x` there, as vLLM's own metrics read when
  vLLM runs on Ray. Outside a Ray worker these objects accept records and export nothing; where Ray is
  not installed (a plain-process orchestrator) there are none.
- This process's: a prometheus_client registry of its own (one per orchestrator, so that several in one
  process do not collide), which the HTTP gateway serves at /metrics under the exact names.

Two families. specdec's own, `specdec_*`: vLLM's speculative-decoding counter names with a `specdec_`
prefix, tagged by rule; the current gamma; draft, verify and RPC latency; time to first token and time per
output token per request. vLLM's, `vllm:*` with a `model_name` label, which vLLM's dashboards read: the
`spec_decode_*` counters, requests running and waiting, prompt and generation tokens, finished requests by
reason, time to first token, time per output token (as vLLM records it: one observation per step, here per
round, of the time since the request's previous tokens, however many tokens the round emitted), end-to-end
latency. Requests waiting are those queued for a place past `limits.max_active_requests` (`admission.py`).

Off the hot path: what a round records (call latencies, token gaps, the current gamma) is kept in plain
lists and handed to both sinks when a request finishes or the lists pass `FLUSH_EVERY` entries.
"""

from __future__ import annotations

import prometheus_client

try:  # a plain-process orchestrator (`specdec orchestrator`) may run where Ray is not installed
    from ray.util import metrics as ray_metrics
except ImportError:
    ray_metrics = None

from specdec.orchestrator.round.stats import RequestStats

LATENCY_BOUNDARIES = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]
MAX_TAGGED_POSITION = 16  # accepted-per-position counts beyond this go under the last position's tag
FLUSH_EVERY = 512  # buffered call latencies handed to the sinks at once
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST  # of `exposition()`
KINDS = {"counter": ("Counter", prometheus_client.Counter), "gauge": ("Gauge", prometheus_client.Gauge),
         "histogram": ("Histogram", prometheus_client.Histogram)}


class Series:
    """One metric on Ray's endpoint (`ray`) and in a local registry (`local`); `inc`, `set` and `observe`
    record to both, `tags` naming every label."""

    def __init__(self, registry: prometheus_client.CollectorRegistry, kind: str, name: str, documentation: str,
                 labels: tuple[str, ...] = ()):
        ray_class, local_class = KINDS[kind]
        self.kind, self.name = kind, name
        histogram = kind == "histogram"
        self.ray = getattr(ray_metrics, ray_class)(name.replace(":", "_"), documentation,
                                                   *([LATENCY_BOUNDARIES] if histogram else []), tag_keys=labels) \
            if ray_metrics else None
        self.local = local_class(name, documentation, labels, registry=registry,
                                 **({"buckets": LATENCY_BOUNDARIES} if histogram else {}))

    def inc(self, value: float, tags: dict[str, str] | None = None) -> None:
        if self.ray is not None:
            self.ray.inc(value, tags=tags)
        self._local(tags).inc(value)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        if self.ray is not None:
            self.ray.set(value, tags=tags)
        self._local(tags).set(value)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        if self.ray is not None:
            self.ray.observe(value, tags=tags)
        self._local(tags).observe(value)

    def _local(self, tags: dict[str, str] | None):
        return self.local.labels(**tags) if tags else self.local


class OrchestratorMetrics:
    def __init__(self, model_name: str = "") -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self._model = {"model_name": model_name}

        def series(kind: str, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Series:
            return Series(self.registry, kind, name, documentation, labels)

        rule, model = ("rule",), ("model_name",)
        self.num_drafts = series("counter", "specdec_num_drafts", "Rounds that drafted at least one token.", rule)
        self.num_draft_tokens = series("counter", "specdec_num_draft_tokens", "Draft tokens proposed.", rule)
        self.num_accepted_tokens = series("counter", "specdec_num_accepted_tokens", "Draft tokens accepted.", rule)
        self.num_accepted_tokens_per_pos = series(
            "counter", "specdec_num_accepted_tokens_per_pos", "Draft tokens accepted, by position in the window.",
            ("rule", "position"))
        self.num_output_tokens = series("counter", "specdec_num_output_tokens", "Tokens generated.", rule)
        self.num_requests = series("counter", "specdec_num_requests", "Requests finished, by finish reason.",
                                   ("rule", "finish_reason"))
        self.gamma = series("gauge", "specdec_gamma", "Draft tokens of the latest round (the controller's gamma).",
                            ("controller",))
        self.active_requests = series("gauge", "specdec_active_requests", "Requests in flight.")
        self.draft_latency = series("histogram", "specdec_draft_latency_seconds",
                                    "Draft service model time per propose call.")
        self.verify_latency = series("histogram", "specdec_verify_latency_seconds",
                                     "Target service model time per verify call.")
        self.rpc_latency = series("histogram", "specdec_rpc_latency_seconds",
                                  "Wall time of calls to the model services.", ("method",))
        self.time_to_first_token = series("histogram", "specdec_time_to_first_token_seconds",
                                          "From request arrival to its first output token.")
        self.time_per_output_token = series("histogram", "specdec_time_per_output_token_seconds",
                                            "Mean time per output token after the first, per request.")
        # vLLM's names (vllm/v1/metrics/loggers.py), which its Grafana dashboards and load testers read.
        self.vllm_num_drafts = series("counter", "vllm:spec_decode_num_drafts", "Number of spec decoding drafts.",
                                      model)
        self.vllm_num_draft_tokens = series("counter", "vllm:spec_decode_num_draft_tokens", "Number of draft tokens.",
                                            model)
        self.vllm_num_accepted_tokens = series("counter", "vllm:spec_decode_num_accepted_tokens",
                                               "Number of accepted tokens.", model)
        self.vllm_num_accepted_tokens_per_pos = series(
            "counter", "vllm:spec_decode_num_accepted_tokens_per_pos", "Accepted tokens per draft position.",
            ("model_name", "position"))
        self.vllm_requests_running = series("gauge", "vllm:num_requests_running", "Number of requests running.",
                                            model)
        self.vllm_requests_waiting = series("gauge", "vllm:num_requests_waiting",
                                            "Number of requests waiting.", model)
        self.vllm_prompt_tokens = series("counter", "vllm:prompt_tokens", "Number of prefill tokens processed.",
                                         model)
        self.vllm_generation_tokens = series("counter", "vllm:generation_tokens",
                                             "Number of generation tokens processed.", model)
        self.vllm_request_success = series("counter", "vllm:request_success", "Count of finished requests.",
                                           ("model_name", "finished_reason"))
        self.vllm_time_to_first_token = series("histogram", "vllm:time_to_first_token_seconds",
                                               "Histogram of time to first token in seconds.", model)
        self.vllm_time_per_output_token = series("histogram", "vllm:time_per_output_token_seconds",
                                                 "Histogram of time per output token in seconds.", model)
        self.vllm_e2e_latency = series("histogram", "vllm:e2e_request_latency_seconds",
                                       "Histogram of end to end request latency in seconds.", model)
        self.running(0)
        self.waiting(0)
        self._calls: list[tuple[str, float, float]] = []  # (method, wall seconds, model seconds), not yet exported
        self._token_gaps: list[float] = []  # seconds between a request's rounds, not yet exported
        self._gammas: dict[str, int] = {}  # controller -> latest gamma, not yet exported

    def rpc(self, method: str, seconds: float, compute_seconds: float) -> None:
        """One call to a model service: its wall time, and the model time the service reported."""
        self._calls.append((method, seconds, compute_seconds))
        if len(self._calls) >= FLUSH_EVERY:
            self.flush()

    def round(self, stats: RequestStats) -> None:
        if stats.gamma_trace:
            self._gammas[stats.gamma_controller] = stats.gamma_trace[-1]

    def running(self, requests: int) -> None:
        """Requests in flight now. Also called every few seconds by the orchestrator actor (with `waiting`):
        Ray stops exporting a gauge that is not set again within two of its export intervals."""
        self.active_requests.set(requests)
        self.vllm_requests_running.set(requests, tags=self._model)

    def waiting(self, requests: int) -> None:
        """Requests admitted to the queue, waiting for a place (`admission`)."""
        self.requests_waiting = requests
        self.vllm_requests_waiting.set(requests, tags=self._model)

    def first_token(self, seconds: float) -> None:
        self.time_to_first_token.observe(seconds)
        self.vllm_time_to_first_token.observe(seconds, tags=self._model)

    def next_tokens(self, seconds: float) -> None:
        """A request's round after its first emitted tokens, `seconds` after the previous one."""
        self._token_gaps.append(seconds)
        if len(self._token_gaps) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered call latencies, token gaps and gammas to both sinks."""
        calls, self._calls = self._calls, []
        for method, seconds, compute_seconds in calls:
            self.rpc_latency.observe(seconds, tags={"method": method})
            (self.draft_latency if method == "Propose" else self.verify_latency).observe(compute_seconds)
        gaps, self._token_gaps = self._token_gaps, []
        for gap in gaps:
            self.vllm_time_per_output_token.observe(gap, tags=self._model)
        gammas, self._gammas = self._gammas, {}
        for controller, gamma in gammas.items():
            self.gamma.set(gamma, tags={"controller": controller})

    def finished(self, stats: RequestStats, first_token_seconds: float | None, total_seconds: float) -> None:
        self.flush()
        tags, model = {"rule": stats.rule}, self._model
        self.num_requests.inc(1, tags={"rule": stats.rule, "finish_reason": stats.finish_reason or "aborted"})
        self.vllm_request_success.inc(1, tags=model | {"finished_reason": stats.finish_reason or "abort"})
        for counter, value in ((self.num_drafts, stats.num_drafts), (self.num_draft_tokens, stats.num_draft_tokens),
                               (self.num_accepted_tokens, stats.num_accepted_tokens),
                               (self.num_output_tokens, stats.output_tokens)):
            if value:
                counter.inc(value, tags=tags)
        for counter, value in ((self.vllm_num_drafts, stats.num_drafts),
                               (self.vllm_num_draft_tokens, stats.num_draft_tokens),
                               (self.vllm_num_accepted_tokens, stats.num_accepted_tokens),
                               (self.vllm_generation_tokens, stats.output_tokens),
                               (self.vllm_prompt_tokens, stats.prompt_tokens)):
            if value:
                counter.inc(value, tags=model)
        for position, count in enumerate(stats.num_accepted_tokens_per_pos):
            if count:
                tagged = str(min(position, MAX_TAGGED_POSITION))
                self.num_accepted_tokens_per_pos.inc(count, tags={"rule": stats.rule, "position": tagged})
                self.vllm_num_accepted_tokens_per_pos.inc(count, tags=model | {"position": tagged})
        self.vllm_e2e_latency.observe(total_seconds, tags=model)
        if first_token_seconds is not None and stats.output_tokens > 1:
            self.time_per_output_token.observe((total_seconds - first_token_seconds) / (stats.output_tokens - 1))

    def exposition(self) -> bytes:
        """Every series of the local registry in Prometheus' text format (the HTTP gateway's /metrics)."""
        self.flush()
        return prometheus_client.generate_latest(self.registry)
