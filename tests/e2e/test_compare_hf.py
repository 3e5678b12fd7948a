"""`specdec bench --compare-hf` end to end on the local deployment, tiny: every row is there, and the greedy
tokens of Hugging Face generate() on the target equal specdec's, prompt by prompt (the oracle)."""

from __future__ import annotations

import json
import math

import pytest
from rich.progress import Progress

from specdec.config import resolve_model
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.cli.main import build_parser
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.measure.bench_report import write_compare
from specdec.orchestrator.measure.compare_hf import TEMPERATURES, Comparison, run_compare, specdec_configs
from specdec.orchestrator.measure.hf_baseline import HFPair, bare_forwards, hf_configs

GAMMA, TOKENS = 4, 8


@pytest.fixture(scope="module")
def comparison(deployment) -> Comparison:
    pair = HFPair(resolve_model("demo:target"), resolve_model("demo:draft"))
    prompts = code_prompts(2, seed=0)
    with Client(deployment.address) as client, Progress(transient=True) as progress:
        bare = bare_forwards(pair, GAMMA, repeats=5, prompts=[p.prompt for p in prompts])
        return run_compare(client, pair, prompts, GAMMA, TOKENS, 0, progress, bare, threads=(1,))


def test_every_row_is_measured(comparison: Comparison):
    labels = {(f.system, f.label, f.temperature) for f in comparison.figures()}
    for temperature in TEMPERATURES:
        for config in hf_configs(GAMMA):
            assert ("HF", config.label, temperature) in labels
        for config in specdec_configs(GAMMA):
            assert ("specdec", config.label.removeprefix("specdec "), temperature) in labels
        for ideal in (f"serial ideal gamma={GAMMA}", f"overlapped ideal gamma={GAMMA}",
                      "bare target, 1 token a forward", f"serial ideal gamma={GAMMA} with prefill",
                      "bare target, 1 token a forward with prefill"):
            assert ("ideal", ideal, temperature) in labels
    assert all(f.tokens_per_second > 0 for f in comparison.figures())
    assert all(math.isfinite(r.value) and r.value > 0 for r in comparison.ratios())
    for rows in comparison.specdec.values():
        assert [r.output_tokens for r in rows] == [2 * TOKENS] * len(rows)
    assert all(r.tokens == 2 * TOKENS for r in comparison.hf)


def test_greedy_hf_generate_equals_specdec_greedy(comparison: Comparison):
    hf = {r.config.label: r.outputs for r in comparison.hf if r.temperature == 0}
    specdec = {r.config.label: r.outputs for r in comparison.specdec[0.0]}
    reference = hf["HF generate()"]
    assert [len(ids) for ids in reference] == [TOKENS, TOKENS]
    for label, outputs in (specdec | hf).items():
        assert outputs == reference, label


def test_results_are_written(comparison: Comparison, tmp_path):
    json_path, csv_path = write_compare(comparison, {"prompts": 2}, tmp_path)
    written = json.loads(json_path.read_text())
    assert {f["system"] for f in written["figures"]} == {"HF", "specdec", "ideal"}
    assert all("round_transport_ms" in f for f in written["figures"] if f["system"] == "specdec")
    assert csv_path.read_text().startswith("system,label,temperature,tokens_per_second")


def test_cli_takes_the_flag():
    args = build_parser().parse_args(["bench", "--compare-hf", "--prompts", "2", "--max-new-tokens", "8"])
    assert (args.compare_hf, args.prompts, args.max_new_tokens, args.address) == (True, 2, 8, None)
