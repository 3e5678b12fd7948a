"""The GPU check's summary: each step's status, the tests' closing line, the bench's headline figures, the
memory peaks and the verify curves, read from the check's folder."""

from __future__ import annotations

import json

from specdec.orchestrator.measure.gpu_report import render, role_of, summarize


def figure(system, label, temperature, tps, **extra):
    return {"system": system, "label": label, "temperature": temperature, "tokens_per_second": tps, **extra}


def test_the_summary_reads_every_part_of_the_check(tmp_path):
    (tmp_path / "steps.txt").write_text("tests rc=0 40s\ndemo rc=0 31s\nbench rc=124 170s\n")
    (tmp_path / "tests.log").write_text("....s\n===== 12 passed, 3 skipped in 40.1s =====\n")
    (tmp_path / "bench").mkdir()
    figures = [figure("HF", "HF generate()", 0.0, 100.0), figure("HF", "HF assisted heuristic (from 4)", 0.0, 150.0),
               figure("specdec", "target-only", 0.0, 110.0),
               figure("specdec", "sd gamma=4 serial", 0.0, 220.0, acceptance_rate=0.8, mean_acceptance_length=4.2,
                      wire_bytes_per_token=21.5),
               figure("specdec", "sd gamma=4 overlapped", 0.0, 240.0)]
    (tmp_path / "bench" / "compare_hf.json").write_text(json.dumps({
        "meta": {"device": "cuda", "dtype": "bfloat16"},
        "bare_forwards": {"draft_1": 0.001, "target_1": 0.004, "target_verify": 0.0042}, "figures": figures}))
    (tmp_path / "gpu-memory.json").write_text(json.dumps({"draft service": 900, "target service": 2100}))
    (tmp_path / "verify_curve.json").write_text(json.dumps({"curves": [
        {"label": "random Llama", "parameters": 1.0e9, "device": "cuda:0",
         "points": [{"positions": 1, "seconds": 0.004, "relative": 1.0},
                    {"positions": 64, "seconds": 0.006, "relative": 1.5}]}]}))
    summary = summarize(tmp_path)
    assert summary["steps"]["bench"] == {"rc": 124, "seconds": 170}
    assert summary["tests"] == "12 passed, 3 skipped in 40.1s"
    greedy = summary["bench"]["greedy"]
    assert summary["bench"]["c"] == 0.25
    assert (greedy["speculative"], greedy["speedup"]) == ("sd gamma=4 serial", 2.0)
    assert greedy["best"] == "sd gamma=4 overlapped"
    assert greedy["best_vs_hf_assisted"] == 240.0 / 150.0 and greedy["wire_bytes_per_token"] == 21.5
    assert "T=1" not in summary["bench"]  # no T=1 rows: nothing made up for it
    text = render(summary)
    assert "step bench: FAILED rc=124" in text and "target service 2100" in text
    assert "1 position 4.00 ms" in text and "64: 6.00" in text


def test_an_empty_folder_is_summarized_as_not_measured(tmp_path):
    summary = summarize(tmp_path)
    assert summary["steps"] == {} and summary["bench"] == {"device": "", "dtype": ""}
    assert "GPU memory peak (MiB): not measured" in render(summary)


def test_gpu_processes_are_named_by_their_command_line():
    assert role_of("python -m specdec.orchestrator.cli service draft --config x") == "draft service"
    assert role_of("python -m specdec.orchestrator.cli service target --config x") == "target service"
    assert role_of("python -m pytest tests/cuda") == "tests"
    assert role_of("/usr/bin/something") == "other"
