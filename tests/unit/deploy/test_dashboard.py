"""The Grafana dashboard in deploy/ plots only metrics the orchestrator exports: under Ray's names
(`ray_specdec_*`, `ray_vllm_*`) and under the exact names of the HTTP API's /metrics (`vllm:*`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from specdec.orchestrator.serving.metrics import OrchestratorMetrics, Series

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Prometheus series names on both endpoints: Ray's adds `ray_` and turns `:` into `_`; counters get
    `_total`, histograms `_bucket`, `_sum` and `_count`."""
    names = set()
    for series in vars(OrchestratorMetrics()).values():
        if isinstance(series, Series):
            for suffix in SUFFIXES[series.kind]:
                names |= {f"ray_{series.ray.info['name']}{suffix}", f"{series.name}{suffix}"}
    return names


def test_every_panel_queries_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"ray_specdec_\w+|ray_vllm_\w+|vllm:\w+", expr)}
    assert used and used <= exported_names(), used - exported_names()
    assert len(dashboard["panels"]) >= 8 and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_dashboard_reads_vllm_names_from_either_endpoint():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for name in ("spec_decode_num_accepted_tokens_total", "spec_decode_num_accepted_tokens_per_pos_total",
                 "num_requests_running", "num_requests_waiting", "prompt_tokens_total", "generation_tokens_total",
                 "time_to_first_token_seconds_bucket", "time_per_output_token_seconds_bucket",
                 "e2e_request_latency_seconds_bucket"):
        assert any(f"ray_vllm_{name}" in e and f"vllm:{name}" in e for e in exprs), name
