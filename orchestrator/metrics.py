"""Prometheus metrics of the orchestrator, through `ray.util.metrics` (DESIGN.md, Metrics).

vLLM's speculative-decoding names with a `specdec_` prefix; Ray exports them on each node's metrics
endpoint with its own `ray_` prefix (for example `ray_specdec_num_draft_tokens_total`). Counters per
deployment, tagged by rule; the current gamma as a gauge; latency histograms in seconds. Outside a Ray
worker the same objects accept records and export nothing, so the orchestrator needs no switch.

Off the hot path: what a round records (call latencies, the current gamma) is kept in plain lists and
handed to Ray when a request finishes or the lists pass `FLUSH_EVERY` entries, not once per call.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

from specdec.orchestrator.stats import RequestStats

LATENCY_BOUNDARIES = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]
MAX_TAGGED_POSITION = 16  # accepted-per-position counts beyond this go under the last position's tag
FLUSH_EVERY = 512  # buffered call latencies handed to Ray at once


class OrchestratorMetrics:
    def __init__(self) -> None:
        rule = ("rule",)
        self.num_drafts = Counter("specdec_num_drafts", "Rounds that drafted at least one token.", rule)
        self.num_draft_tokens = Counter("specdec_num_draft_tokens", "Draft tokens proposed.", rule)
        self.num_accepted_tokens = Counter("specdec_num_accepted_tokens", "Draft tokens accepted.", rule)
        self.num_accepted_tokens_per_pos = Counter(
            "specdec_num_accepted_tokens_per_pos", "Draft tokens accepted, by position in the window.",
            ("rule", "position"))
        self.num_output_tokens = Counter("specdec_num_output_tokens", "Tokens generated.", rule)
        self.num_requests = Counter("specdec_num_requests", "Requests finished, by finish reason.",
                                    ("rule", "finish_reason"))
        self.gamma = Gauge("specdec_gamma", "Draft tokens of the latest round (the controller's current gamma).",
                           ("controller",))
        self.active_requests = Gauge("specdec_active_requests", "Requests in flight.")
        self.draft_latency = Histogram("specdec_draft_latency_seconds", "Draft service model time per propose call.",
                                       LATENCY_BOUNDARIES)
        self.verify_latency = Histogram("specdec_verify_latency_seconds",
                                        "Target service model time per verify call.", LATENCY_BOUNDARIES)
        self.rpc_latency = Histogram("specdec_rpc_latency_seconds", "Wall time of calls to the model services.",
                                     LATENCY_BOUNDARIES, ("method",))
        self.time_to_first_token = Histogram("specdec_time_to_first_token_seconds",
                                             "From request arrival to its first output token.", LATENCY_BOUNDARIES)
        self.time_per_output_token = Histogram("specdec_time_per_output_token_seconds",
                                               "Mean time per output token after the first, per request.",
                                               LATENCY_BOUNDARIES)
        self._calls: list[tuple[str, float, float]] = []  # (method, wall seconds, model seconds), not yet exported
        self._gammas: dict[str, int] = {}  # controller -> latest gamma, not yet exported

    def rpc(self, method: str, seconds: float, compute_seconds: float) -> None:
        """One call to a model service: its wall time, and the model time the service reported."""
        self._calls.append((method, seconds, compute_seconds))
        if len(self._calls) >= FLUSH_EVERY:
            self.flush()

    def round(self, stats: RequestStats) -> None:
        if stats.gamma_trace:
            self._gammas[stats.gamma_controller] = stats.gamma_trace[-1]

    def flush(self) -> None:
        """Hand the buffered call latencies and gammas to Ray."""
        calls, self._calls = self._calls, []
        for method, seconds, compute_seconds in calls:
            self.rpc_latency.observe(seconds, tags={"method": method})
            (self.draft_latency if method == "Propose" else self.verify_latency).observe(compute_seconds)
        gammas, self._gammas = self._gammas, {}
        for controller, gamma in gammas.items():
            self.gamma.set(gamma, tags={"controller": controller})

    def first_token(self, seconds: float) -> None:
        self.time_to_first_token.observe(seconds)

    def finished(self, stats: RequestStats, first_token_seconds: float | None, total_seconds: float) -> None:
        self.flush()
        tags = {"rule": stats.rule}
        self.num_requests.inc(1, tags={"rule": stats.rule, "finish_reason": stats.finish_reason or "aborted"})
        for counter, value in ((self.num_drafts, stats.num_drafts), (self.num_draft_tokens, stats.num_draft_tokens),
                               (self.num_accepted_tokens, stats.num_accepted_tokens),
                               (self.num_output_tokens, stats.output_tokens)):
            if value:
                counter.inc(value, tags=tags)
        for position, count in enumerate(stats.num_accepted_tokens_per_pos):
            if count:
                self.num_accepted_tokens_per_pos.inc(
                    count, tags={"rule": stats.rule, "position": str(min(position, MAX_TAGGED_POSITION))})
        if first_token_seconds is not None and stats.output_tokens > 1:
            self.time_per_output_token.observe((total_seconds - first_token_seconds) / (stats.output_tokens - 1))
