"""The load tester's pure parts: arrivals, token timing, summaries, prompt files."""

from __future__ import annotations

import statistics

import pytest

from specdec.orchestrator.measure.loadtest import (
    LoadSpec,
    RequestRecord,
    Slo,
    arrival_times,
    chunk_gaps,
    load_plans,
    percentiles,
    summarize,
)


@pytest.mark.parametrize("burstiness", [0.5, 1.0, 4.0])
def test_arrivals_have_the_rate_and_the_burstiness(burstiness):
    times = arrival_times(20000, rate=8.0, burstiness=burstiness, seed=1)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[0] == 0.0 and all(g >= 0 for g in gaps)
    assert statistics.fmean(gaps) == pytest.approx(1 / 8.0, rel=0.05)
    # gamma gaps of shape k: squared coefficient of variation 1/k (1 for Poisson arrivals)
    assert statistics.pvariance(gaps) / statistics.fmean(gaps) ** 2 == pytest.approx(1 / burstiness, rel=0.1)
    assert arrival_times(10, 8.0, burstiness, seed=1) == times[:10]


def test_inter_token_latency_is_a_gap_a_chunk_as_vllm_measures_it():
    # chunks: 3 tokens at 0.10 s, 1 token at 0.30 s, 4 tokens at 0.50 s
    assert chunk_gaps([(0.10, 3), (0.30, 1), (0.50, 4)]) == pytest.approx([0.2, 0.2])
    assert chunk_gaps([]) == [] and chunk_gaps([(0.2, 1)]) == []


def test_percentiles_by_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    summary = percentiles(values)
    assert summary["median"] == 50.5 and summary["p90"] == 90.0 and summary["p99"] == 99.0
    assert summary["mean"] == pytest.approx(50.5)
    assert percentiles([])["p99"] == 0.0


def test_summary_goodput_failures_and_acceptance():
    fast = RequestRecord(ok=True, ttft=0.1, e2e=1.0, output_tokens=10, itl=[0.1] * 9, num_draft_tokens=8,
                         num_accepted_tokens=4, num_drafts=2)
    slow = RequestRecord(ok=True, ttft=0.9, e2e=3.0, output_tokens=10, itl=[0.2] * 9, num_draft_tokens=8,
                         num_accepted_tokens=2, num_drafts=2)
    failed = RequestRecord(ok=False, status="UNAVAILABLE")
    summary = summarize([fast, slow, failed], duration=2.0, slo=Slo(ttft=0.5))
    assert summary["completed"] == 2 and summary["failures"] == {"UNAVAILABLE": 1}
    assert summary["output_tokens_per_s"] == 10.0 and summary["requests_per_s"] == 1.0
    assert summary["goodput_requests_per_s"] == 0.5  # only the fast request meets the TTFT limit
    assert summary["tpot_s"]["mean"] == pytest.approx(((1.0 - 0.1) / 9 + (3.0 - 0.9) / 9) / 2)
    assert summary["acceptance_rate"] == 6 / 16 and summary["mean_acceptance_length"] == 1 + 6 / 4
    assert not Slo(e2e=2.0).met(slow) and Slo().met(slow) and not Slo().met(failed)


def test_load_split_over_generators():
    assert [LoadSpec(concurrency=5).share(i, 2).concurrency for i in range(2)] == [3, 2]
    assert LoadSpec(rate=9.0, burstiness=0.5).share(1, 3) == LoadSpec(rate=3.0, burstiness=0.5)


def test_prompt_files(tmp_path):
    good = tmp_path / "prompts.jsonl"
    good.write_text('{"prompt": "def f():"}\n\n{"prompt": "import os", "max_new_tokens": 5}\n')
    plans = load_plans(str(good), 3, max_new_tokens=16, seed=7, input_chars=3, seeded=True)
    assert [(p.prompt, p.max_new_tokens, p.seed) for p in plans] == [("():", 16, 7), (" os", 5, 8), ("():", 16, 9)]
    assert [p.seed for p in load_plans(str(good), 2, 16, seed=7)] == [None, None]  # the server draws them
    assert len(load_plans("heldout", 4, 16, seed=0)) == 4
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: prompt"):
        load_plans(str(bad), 2, 16, 0)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not JSON"):
        load_plans(str(bad), 2, 16, 0)


def test_server_sent_events_are_read_by_their_data_lines():
    from specdec.orchestrator.client.openai_client import sse_data

    lines = [b'data: {"a": 1}\n', b"\n", b": ping\n", b"\n", b"data: one\n", b"data: two\r\n", b"\r\n",
             b"data: [DONE]\n", b"\n"]
    assert list(sse_data(lines)) == ['{"a": 1}', "one\ntwo", "[DONE]"]
