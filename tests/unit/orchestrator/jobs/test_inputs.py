"""Job files: JSONL lines -> GenerateRequest messages; bad lines named `file:line: field`."""

from __future__ import annotations

from pathlib import Path

import pytest

from specdec.errors import InvalidField
from specdec.orchestrator.client.grpc_client import job_request, result_to_dict
from specdec.orchestrator.jobs.inputs import JobFileError, parse_lines, read_requests, request_from_dict
from specdec.v1 import specdec_pb2 as pb


def test_a_line_sets_fields_by_proto_name():
    request = request_from_dict({"prompt": "def f():", "max_new_tokens": 16, "temperature": 0, "top_k": 5,
                                 "rule": "fsd", "rule_params": {"threshold": 0.3}, "gamma": 0, "seed": 7,
                                 "ignore_eos": True, "overlap": False})
    assert request.prompt == "def f():" and request.max_new_tokens == 16 and request.rule == "fsd"
    assert request.sampling.top_k == 5 and request.sampling.temperature == 0
    assert request.rule_params.threshold == pytest.approx(0.3)
    assert request.HasField("gamma") and request.gamma == 0  # an explicit 0 is kept: target-only decoding
    assert request.seed == 7 and request.ignore_eos and request.HasField("overlap")
    assert not request_from_dict({"prompt": "x"}).HasField("seed")  # unset stays unset: the server picks one


def test_sampling_as_an_object():
    request = request_from_dict({"prompt": "x", "sampling": {"temperature": 0.8, "top_p": 0.9}})
    assert request.sampling.temperature == pytest.approx(0.8) and request.sampling.top_p == pytest.approx(0.9)


@pytest.mark.parametrize("entry, field", [
    ({"max_new_tokens": 4}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x", "max_tokens": 4}, "max_tokens"),
    ({"prompt": "x", "max_new_tokens": "many"}, "max_new_tokens"),
    ({"prompt": "x", "ignore_eos": 1}, "ignore_eos"),
    ({"prompt": "x", "temperature": "hot"}, "sampling.temperature"),
    ({"prompt": "x", "temperature": 0, "sampling": {"temperature": 1}}, "temperature"),
    ({"prompt": "x", "sampling": 0.5}, "sampling"),
    ({"prompt": "x", "rule_params": {"treshold": 1}}, "rule_params"),
    (["x"], "request"),
])
def test_a_bad_entry_names_the_field(entry, field):
    with pytest.raises(InvalidField) as info:
        request_from_dict(entry)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_a_file_skips_blank_lines_and_names_the_bad_line(tmp_path: Path):
    good = tmp_path / "prompts.jsonl"
    good.write_text('{"prompt": "a"}\n\n{"prompt": "b", "max_new_tokens": 3}\n')
    assert [r.prompt for r in read_requests(good)] == ["a", "b"]
    with pytest.raises(JobFileError, match=r"^p\.jsonl:3: max_new_tokens: "):
        parse_lines(['{"prompt": "a"}', "", '{"prompt": "b", "max_new_tokens": "x"}'], "p.jsonl")
    with pytest.raises(JobFileError, match=r"^p\.jsonl:2: not JSON"):
        parse_lines(['{"prompt": "a"}', '{"prompt": '], "p.jsonl")
    with pytest.raises(JobFileError, match="no requests"):
        parse_lines(["", "  "], "p.jsonl")


def test_client_items_and_result_records():
    assert job_request("def f():", 0).prompt == "def f():"
    with pytest.raises(InvalidField, match=r"^requests\[2\]\.gamma: "):
        job_request({"prompt": "x", "gamma": "four"}, 2)
    ok = pb.JobResult(index=1, prompt="p", completion="c", token_ids=[4, 5], stats=pb.RequestStats(output_tokens=2))
    record = result_to_dict(ok)
    assert (record["index"], record["completion"], record["token_ids"]) == (1, "c", [4, 5])
    assert record["stats"]["output_tokens"] == 2 and "error" not in record
    bad = result_to_dict(pb.JobResult(index=2, prompt="p", error=pb.ItemError(code="INTERNAL", message="boom")))
    assert bad == {"index": 2, "prompt": "p", "error": {"code": "INTERNAL", "message": "boom"}}
