"""The Grafana dashboard in deploy/ plots only metrics the orchestrator exports, under Ray's names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ray.util.metrics import Counter, Gauge, Histogram

from specdec.orchestrator.metrics import OrchestratorMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def exported_names() -> set[str]:
    """Prometheus series names as Ray exports them: a `ray_` prefix, `_total` on counters, `_bucket` etc."""
    names = set()
    metrics = [m for m in vars(OrchestratorMetrics()).values() if isinstance(m, Counter | Gauge | Histogram)]
    for metric in metrics:
        base = f"ray_{metric.info['name']}"
        if isinstance(metric, Counter):
            names.add(f"{base}_total")
        elif isinstance(metric, Histogram):
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(base)
    return names


def test_every_panel_queries_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"ray_specdec_\w+", expr)}
    assert used and used <= exported_names(), used - exported_names()
    assert len(dashboard["panels"]) >= 8 and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
