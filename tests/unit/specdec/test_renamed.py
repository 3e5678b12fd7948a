"""Renamed fields: the old spelling still works for one release, with a FutureWarning, wherever users write it
(job lines, HTTP bodies, the serve config); giving both spellings is refused naming the new one."""

from __future__ import annotations

import pytest

from specdec.config import ServeConfig
from specdec.errors import InvalidField
from specdec.orchestrator.jobs.inputs import request_from_dict
from specdec.orchestrator.serving.openai_api import CompletionRequest, completion_plan
from specdec.renamed import REQUEST_FIELDS, current_names


def test_an_old_spelling_moves_to_the_new_name_with_a_warning():
    with pytest.warns(FutureWarning, match="num_drafts is deprecated: it is now num_draft_sequences"):
        assert current_names({"num_drafts": 3, "gamma": 2}, REQUEST_FIELDS) == {"num_draft_sequences": 3, "gamma": 2}


def test_new_names_pass_unchanged_and_unwarned(recwarn):
    assert current_names({"num_draft_sequences": 3}, REQUEST_FIELDS) == {"num_draft_sequences": 3}
    assert not recwarn.list


def test_both_spellings_are_refused_naming_the_new_one():
    with pytest.raises(InvalidField) as refused:
        current_names({"num_drafts": 3, "num_draft_sequences": 2}, REQUEST_FIELDS, "requests[4].")
    assert refused.value.field == "requests[4].num_draft_sequences"


def test_a_job_line_with_the_old_spelling_sets_m():
    with pytest.warns(FutureWarning):
        request = request_from_dict({"prompt": "def f():", "num_drafts": 2})
    assert request.num_draft_sequences == 2


def test_an_http_body_with_the_old_spelling_sets_m():
    body = CompletionRequest.model_validate({"prompt": "def f():", "num_drafts": 2})
    with pytest.warns(FutureWarning):
        assert completion_plan(body).choices[0].num_draft_sequences == 2


def test_an_http_body_with_both_spellings_is_refused_naming_the_new_one():
    body = CompletionRequest.model_validate({"prompt": "def f():", "num_drafts": 2, "num_draft_sequences": 3})
    with pytest.raises(InvalidField) as refused:
        completion_plan(body)
    assert refused.value.field == "num_draft_sequences"


def test_the_serve_configs_old_key_still_sets_the_limit():
    with pytest.warns(FutureWarning, match="limits.max_num_drafts is deprecated"):
        config = ServeConfig.from_dict({"limits": {"max_num_drafts": 4}})
    assert config.limits.max_draft_sequences == 4
