"""The arithmetic of `specdec bench --compare-hf` on hand-made stats: breakdown, ideal, ratios, report."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import pytest
from rich.console import Console

from specdec.orchestrator.measure.bench import BenchRow
from specdec.orchestrator.measure.bench_report import compare_records, print_compare, write_compare
from specdec.orchestrator.measure.compare_hf import (
    Comparison,
    expected_tokens_per_round,
    overlapped_ideal_tokens_per_second,
    round_breakdown,
    serial_ideal_tokens_per_second,
    specdec_configs,
    with_prefill,
)
from specdec.orchestrator.measure.hf_baseline import BareForwards, HFRow, hf_configs


def stats(**overrides) -> dict:
    """One request's stats as a Client returns them: 10 rounds of gamma 4, 30 tokens, 2 s."""
    base = {"request_id": "r", "rule": "sd", "gamma": 4, "prompt_tokens": 100,
            "output_tokens": 30, "seconds": 2.0, "num_rounds": 10, "num_drafts": 10, "num_draft_tokens": 40,
            "num_accepted_tokens": 20, "num_accepted_tokens_per_pos": [8, 6, 4, 2], "draft_seconds": 0.4,
            "num_draft_forwards": 40, "verify_seconds": 1.0, "num_verify_forwards": 10, "wire_bytes": 1000,
            "num_pre_drafted": 0, "num_lane_hits": 0, "gamma_trace": [4] * 10, "draft_call_seconds": 0.5,
            "verify_call_seconds": 1.2, "wait_seconds": 0.1}
    return base | overrides


def row_of(config, *requests: dict) -> BenchRow:
    row = BenchRow(config)
    for request in requests:
        row.add(request, [1, 2, 3])
    return row


def test_breakdown_splits_the_round_and_adds_up():
    config = specdec_configs(4)[1]
    b = round_breakdown(row_of(config, stats(), stats()))
    # per round, over 20 rounds: draft 0.8 s, verify 2 s, calls 3.4 s, wait 0.2 s, wall 4 s
    assert b.draft_model_ms == pytest.approx(40.0)
    assert b.target_model_ms == pytest.approx(100.0)
    assert b.transport_ms == pytest.approx(30.0)
    assert b.waiting_ms == pytest.approx(10.0)
    assert b.orchestrator_ms == pytest.approx(20.0)
    assert b.round_ms == pytest.approx(200.0)
    parts = b.draft_model_ms + b.target_model_ms + b.transport_ms + b.waiting_ms + b.orchestrator_ms
    assert parts == pytest.approx(b.round_ms)


def test_breakdown_of_a_row_without_rounds_is_zero():
    assert round_breakdown(BenchRow(specdec_configs(4)[0])).round_ms == 0.0


def test_per_position_counts_add_across_requests_of_different_gamma():
    row = row_of(specdec_configs(4)[1], stats(), stats(num_accepted_tokens_per_pos=[1, 1, 1, 1, 1]))
    assert row.num_accepted_tokens_per_pos == [9, 7, 5, 3, 1]


def test_expected_tokens_per_round_is_the_telescoped_product_and_the_mean_acceptance_length():
    assert expected_tokens_per_round([8, 6, 4, 2], 10) == pytest.approx(1 + 20 / 10)
    alpha, gamma, drafts = 0.5, 4, 1024
    counts = [round(drafts * alpha ** (k + 1)) for k in range(gamma)]
    assert expected_tokens_per_round(counts, drafts) == pytest.approx((1 - alpha ** (gamma + 1)) / (1 - alpha))
    assert expected_tokens_per_round([3, 0, 0], 4) == pytest.approx(1.75)
    assert expected_tokens_per_round([], 0) == 1.0


def test_ideals_follow_the_performance_model():
    # figures of a measured CPU pair: draft 1.1 ms, verify of 5 tokens 10.4 ms, gamma 4.
    assert serial_ideal_tokens_per_second(3.0, 4, 0.0011, 0.0104) == pytest.approx(3.0 / 0.0148)
    assert overlapped_ideal_tokens_per_second(3.0, 4, 0.0011, 0.0104) == pytest.approx(3.0 / 0.0104)
    assert overlapped_ideal_tokens_per_second(3.0, 4, 0.004, 0.0104) == pytest.approx(3.0 / 0.016)


def test_an_ideal_with_prefill_pays_each_prompt_once():
    assert with_prefill(100.0, 64, 0.0) == pytest.approx(100.0)
    assert with_prefill(100.0, 64, 0.16) == pytest.approx(64 / 0.8)  # 0.64 s of decoding and 0.16 s of prefill
    assert with_prefill(0.0, 64, 0.1) == 0.0 and with_prefill(100.0, 0, 0.1) == 0.0


def test_prefill_ideals_appear_when_prefills_and_the_request_length_are_known():
    plain = comparison()
    assert not [f for f in plain.figures() if "with prefill" in f.label]
    prefilled = replace(plain, bare=replace(plain.bare, target_prefill=0.2, draft_prefill=0.04), max_new_tokens=30)
    figures = {(f.label, f.temperature): f.tokens_per_second for f in prefilled.figures()}
    serial_ideal = 3 / 0.088
    assert figures[("serial ideal gamma=4 with prefill", 0.0)] == pytest.approx(30 / (30 / serial_ideal + 0.24))
    assert figures[("bare target, 1 token a forward with prefill", 1.0)] == pytest.approx(30 / (30 * 0.05 + 0.2))
    ratios = {r.name: r.value for r in prefilled.ratios()}
    assert ratios["greedy: sd gamma=4 serial / serial ideal gamma=4 with prefill"] == pytest.approx(
        15 / figures[("serial ideal gamma=4 with prefill", 0.0)])
    assert ratios["T=1: target-only / bare target, 1 token a forward with prefill"] == pytest.approx(
        10 / figures[("bare target, 1 token a forward with prefill", 1.0)])


def comparison() -> Comparison:
    configs = specdec_configs(4)
    target_only = stats(output_tokens=10, seconds=1.0, num_rounds=10, num_drafts=0, num_draft_tokens=0,
                        num_accepted_tokens=0, num_accepted_tokens_per_pos=[], draft_seconds=0.0,
                        num_draft_forwards=0, draft_call_seconds=0.0, wait_seconds=0.0, gamma_trace=[0] * 10)
    overlapped = stats(seconds=1.0, num_outcomes_per_accepted=[4, 2, 1, 1, 2],
                       num_outcome_hits_per_accepted=[2, 1, 0, 0, 2])
    specdec = {t: [row_of(configs[0], target_only),
                   row_of(configs[1], stats()),  # 15 tok/s
                   row_of(configs[2], overlapped),  # 30 tok/s
                   row_of(configs[3], stats(seconds=1.5)),  # the default configuration: 20 tok/s
                   row_of(configs[4], stats(seconds=3.0))]  # 10 tok/s
               for t in (0.0, 1.0)}
    for rows in specdec.values():
        rows[2].core_shares = {"draft": 0.65, "target": 0.66, "orchestrator": 0.11}
    hf = []
    for t in (0.0, 1.0):
        for config, seconds in zip(hf_configs(4), (2.0, 1.5, 1.2), strict=True):
            for threads, slower in ((1, 1.0), (2, 2.0)):
                hf.append(HFRow(config, t, threads, tokens=30, seconds=seconds * slower))
    return Comparison(4, BareForwards(100, 4, draft_1=0.002, target_1=0.05, target_verify=0.08), specdec, hf)


def test_headline_ratios_from_hand_made_rows():
    ratios = {r.name: r for r in comparison().ratios()}
    assert ratios["greedy: specdec target-only / HF generate()"].value == pytest.approx(10 / 15)
    assert ratios["greedy: specdec target-only / bare target forwards"].value == pytest.approx(10 / 20)
    # serial sd: 3 tokens a round measured; ideal 3 / (4 x 2 ms + 80 ms)
    assert ratios["greedy: specdec serial sd / serial ideal"].value == pytest.approx(15 / (3 / 0.088))
    assert ratios["greedy: specdec overlapped sd / overlapped ideal"].value == pytest.approx(30 / (3 / 0.08))
    best = ratios["greedy: best specdec speculative / best HF assisted"]
    assert (best.numerator, best.denominator) == ("sd gamma=4 overlapped, 8 lanes", "HF assisted heuristic (from 4)")
    assert best.value == pytest.approx(30 / 25)
    assert ratios["greedy: overlapped / serial, own draft"].value == pytest.approx(30 / 15)
    assert ratios["T=1: default config, sd gamma=4 / best HF assisted"].value == pytest.approx(20 / 25)
    assert ratios["T=1: best specdec speculative / HF generate()"].value == pytest.approx(30 / 15)
    assert ratios["T=1: sd cost controller / own target-only"].value == pytest.approx(1.0)
    assert ratios["greedy: draft model time per forward, through the system / bare"].value == pytest.approx(
        (0.4 / 40) / 0.002)
    assert ratios["greedy: draft call time per drafted token / bare draft forward"].value == pytest.approx(
        (0.5 / 40) / 0.002)
    assert all(math.isfinite(r.value) and r.value > 0 for r in ratios.values())


def test_hf_figures_take_the_faster_thread_count():
    hf = [f for f in comparison().figures() if f.system == "HF"]
    assert len(hf) == 6
    assert {f.note for f in hf} == {"1 thread(s)"}
    assert {f.label: f.tokens_per_second for f in hf if f.temperature == 0} == {
        "HF generate()": 15.0, "HF assisted constant gamma=4": 20.0, "HF assisted heuristic (from 4)": 25.0}


def test_report_prints_and_writes_every_figure(tmp_path):
    result = comparison()
    out = io.StringIO()
    print_compare(result, Console(file=out, width=200))
    text = out.getvalue()
    for expected in ("specdec vs Hugging Face", "where a round's time goes", "serial ideal gamma=4",
                     "best specdec speculative / best HF assisted", "c = 0.040", "the speculation cache",
                     "0: 2/4  1: 1/2  2: 0/1  3: 0/1  4: 2/2", "on the cores", "0.65"):
        assert expected in text
    json_path, csv_path = write_compare(result, {"prompts": 1}, tmp_path)
    written = json.loads(json_path.read_text())
    assert len(written["figures"]) == len(compare_records(result)) == 2 * (3 + 5 + 3)
    assert written["figures"][3]["round_round_ms"] == pytest.approx(100.0)  # target-only: 1 s over 10 rounds
    assert len(csv_path.read_text().splitlines()) == 1 + 22


def test_a_further_drafts_rows_join_the_comparison_labelled_with_it():
    """The head's rows stand beside the standalone draft's: each against the same target-only row, and in the
    race for the best speculative figure; its overlapped row is set against its serial row and against an
    overlapped ideal from its own model times; the other ideals stay the standalone draft's."""
    result = comparison()
    head_rows = specdec_configs(4, "head")
    assert [c.label for c in head_rows] == [
        "specdec sd gamma=4 serial, head", "specdec sd gamma=4 overlapped, 8 lanes, head",
        "specdec default config, sd gamma=4, head", "specdec sd cost controller, head"]
    for rows in result.specdec.values():
        rows += [row_of(config, stats(seconds=seconds)) for config, seconds in zip(head_rows, (0.5, 0.4, 0.45, 4.0),
                                                                                    strict=True)]
    ratios = {r.name: r for r in result.ratios()}
    assert ratios["greedy: sd gamma=4 serial, head / own target-only"].value == pytest.approx(60 / 10)
    best = ratios["greedy: best specdec speculative / best HF assisted"]
    assert best.numerator == "sd gamma=4 overlapped, 8 lanes, head" and best.value == pytest.approx(75 / 25)
    assert ratios["greedy: overlapped / serial, head"].value == pytest.approx(75 / 60)
    # its ideal: 3 tokens a round / max(verify 100 ms, 4 x draft 10 ms)
    assert ratios["greedy: overlapped / overlapped ideal, head"].value == pytest.approx(75 / 30)
    assert ratios["greedy: specdec serial sd / serial ideal"].numerator == "sd gamma=4 serial"
