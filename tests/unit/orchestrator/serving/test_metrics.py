"""The orchestrator's metrics in the local registry the HTTP API serves: vLLM's names with vLLM's labels
beside specdec's, counted from a request's stats."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.serving.metrics import OrchestratorMetrics


def samples(metrics: OrchestratorMetrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode()) for s in family.samples}


def test_a_finished_request_counts_under_vllms_and_specdecs_names():
    metrics = OrchestratorMetrics("demo:target")
    stats = RequestStats("r", "sd", 3, prompt_tokens=7, finish_reason="stop")
    stats.record_round(3, 2, 0.01, 0.02, 0)
    stats.record_round(3, 3, 0.01, 0.02, 0)
    stats.output_tokens = 7
    metrics.running(1)
    metrics.first_token(0.05)
    metrics.next_tokens(0.02)
    metrics.finished(stats, 0.05, 0.09)
    got, model = samples(metrics), (("model_name", "demo:target"),)
    assert got[("vllm:spec_decode_num_drafts_total", model)] == 2
    assert got[("vllm:spec_decode_num_draft_tokens_total", model)] == 6
    assert got[("vllm:spec_decode_num_accepted_tokens_total", model)] == 5
    assert [got[("vllm:spec_decode_num_accepted_tokens_per_pos_total", model + (("position", str(p)),))]
            for p in range(3)] == [2, 2, 1]
    assert got[("vllm:prompt_tokens_total", model)] == 7 and got[("vllm:generation_tokens_total", model)] == 7
    assert got[("vllm:request_success_total", (("finished_reason", "stop"),) + model)] == 1
    assert got[("vllm:num_requests_running", model)] == 1 and got[("vllm:num_requests_waiting", model)] == 0
    for name in ("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds"):
        assert got[(f"vllm:{name}_count", model)] == 1
    assert got[("specdec_num_accepted_tokens_total", (("rule", "sd"),))] == 5


def test_each_orchestrator_has_a_registry_of_its_own():
    first, second = OrchestratorMetrics("a"), OrchestratorMetrics("b")
    first.running(3)
    assert samples(second)[("vllm:num_requests_running", (("model_name", "b"),))] == 0
