"""The draft runner on the real demo draft: a window reads back to the host once per batch whatever gamma
(one list of ints, one of floats), seeded
windows repeat, and sessions drafting in lockstep draft what each drafts alone."""

from __future__ import annotations

import pytest
import torch

from specdec.config import resolve_model
from specdec.services.draft.runner import DraftRunner
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.types import ProposeCall, SamplingParams
from tests.helpers import host_reads

PROMPTS = {"a": [5, 17, 99, 250, 3, 41], "b": [8, 9, 10, 11]}


@pytest.fixture(scope="module")
def runner() -> DraftRunner:
    return DraftRunner(CausalLM(LoadSpec(resolve_model("demo:draft"))))


def calls(gamma: int, round_index: int = 1, **fields) -> list[ProposeCall]:
    return [ProposeCall(sid, round_index, 0, prompt, gamma, fields.pop("sampling", SamplingParams(temperature=0.9)),
                        seed=7, want_probs=True, **fields) for sid, prompt in PROMPTS.items()]


def test_a_window_reads_back_once_whatever_its_length(runner: DraftRunner, monkeypatch: pytest.MonkeyPatch):
    short = host_reads(lambda: runner.propose_batch(calls(2)), monkeypatch)
    long = host_reads(lambda: runner.propose_batch(calls(8)), monkeypatch)
    assert short == long and short["tolist"] == 2 == sum(short.values())  # the ints, then the floats


def test_the_confidence_early_stop_reads_back_per_token(runner: DraftRunner, monkeypatch: pytest.MonkeyPatch):
    short = host_reads(lambda: runner.propose_batch(calls(2, confidence_threshold=1e-9)), monkeypatch)
    long = host_reads(lambda: runner.propose_batch(calls(8, confidence_threshold=1e-9)), monkeypatch)
    assert sum(long.values()) > sum(short.values())


def test_a_seeded_window_repeats_and_the_round_changes_it(runner: DraftRunner):
    first = [p.draft_tokens for p in runner.propose_batch(calls(8))]
    again = [p.draft_tokens for p in runner.propose_batch(calls(8))]
    other = [p.draft_tokens for p in runner.propose_batch(calls(8, round_index=2))]
    assert first == again and first != other


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.0), SamplingParams(temperature=0.9, top_k=50)])
def test_lockstep_drafts_what_each_session_drafts_alone(runner: DraftRunner, sampling: SamplingParams):
    together = runner.propose_batch(calls(5, sampling=sampling, want_alternatives=True))
    for call, proposal in zip(calls(5, sampling=sampling, want_alternatives=True), together, strict=True):
        alone = runner.propose(call)
        assert alone.draft_tokens == proposal.draft_tokens and len(alone.draft_tokens) == 5
        assert alone.alternative_tokens == proposal.alternative_tokens
        assert torch.allclose(alone.draft_probs.dense(), proposal.draft_probs.dense(), atol=1e-4)
        assert alone.cache_len == proposal.cache_len == len(PROMPTS[call.session_id]) + 4
        rows = proposal.draft_probs.dense()[torch.arange(5), torch.tensor(proposal.draft_tokens)]
        assert rows.tolist() == list(proposal.draft_token_probs)  # the reported probability of each token...
        assert bool((rows > 0).all())  # ...in the distribution it was drawn from


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.0), SamplingParams(temperature=0.9)])
def test_alternatives_are_computed_only_when_asked_for(runner: DraftRunner, sampling: SamplingParams):
    plain = runner.propose_batch(calls(4, sampling=sampling))
    asked = runner.propose_batch(calls(4, sampling=sampling, want_alternatives=True))
    for without, with_alternatives in zip(plain, asked, strict=True):
        assert without.alternative_tokens == () and without.draft_tokens == with_alternatives.draft_tokens
        assert len(with_alternatives.alternative_tokens) == 4
        assert all(other != token for other, token in zip(with_alternatives.alternative_tokens,
                                                           with_alternatives.draft_tokens, strict=True))
