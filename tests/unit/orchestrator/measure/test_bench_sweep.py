"""`specdec bench`'s grid: the deployment's own draft gets every rule and controller; a further draft (a
feature head) gets sd at each gamma and under each controller, labelled with it and kept out of the
findings, its speedups against the same target-only row."""

from __future__ import annotations

from specdec.orchestrator.measure.bench import BenchConfig, BenchRow, build_sweep, draft_sweep, findings, set_speedups
from specdec.orchestrator.round.stats import RequestStats


def row(config: BenchConfig, tokens_per_second: float) -> BenchRow:
    result = BenchRow(config, RequestStats("r", "sd", config.gamma, 10, output_tokens=int(tokens_per_second),
                                           seconds=1.0))
    result.prompts = 1
    return result


def test_a_further_drafts_rows_are_labelled_and_kept_out_of_the_findings():
    sweep = build_sweep([2, 4], 4, ["cost"], ["kl"], [0.3], [0.1], [2])
    head = draft_sweep("head", [2, 4], 4, ["cost"])
    assert [c.label for c in head] == ["head: sd gamma=2", "head: sd gamma=4", "head: sd cost"]
    assert {c.group for c in head} == {"draft"} and {c.rule for c in head} == {"sd"}
    rows = [row(config, 10.0) for config in sweep] + [row(config, 30.0) for config in head]
    set_speedups(rows, rows[0])
    assert rows[-1].speedup == 3.0
    found = findings(rows, 4)
    assert not found.best_fixed.startswith("head") and "head: sd cost" not in found.controllers
