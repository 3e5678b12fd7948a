"""The draft runner on the real demo draft: a window reads back to the host once per batch whatever gamma
(one list of ints, one of floats), seeded
windows repeat, and sessions drafting in lockstep draft what each drafts alone."""

from __future__ import annotations

import pytest
import torch

from specdec.config import resolve_model
from specdec.errors import SessionError
from specdec.services.draft.runner import DraftRunner
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.types import Lane, ProposeCall, SamplingParams
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
    together = runner.propose_batch(calls(5, sampling=sampling, num_alternatives=2))
    for call, proposal in zip(calls(5, sampling=sampling, num_alternatives=2), together, strict=True):
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
    asked = runner.propose_batch(calls(4, sampling=sampling, num_alternatives=2))
    for without, with_alternatives in zip(plain, asked, strict=True):
        assert without.alternative_tokens == () and without.draft_tokens == with_alternatives.draft_tokens
        assert len(with_alternatives.alternative_tokens) == 4 * 2
        for position, token in enumerate(with_alternatives.draft_tokens):
            others = with_alternatives.alternatives(position)
            assert len(set(others)) == 2 and token not in others


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.0), SamplingParams(temperature=0.9, top_k=50)])
def test_each_lane_drafts_what_a_session_holding_its_premise_drafts(runner: DraftRunner, sampling: SamplingParams):
    """Lanes over forks of one session: each lane's window equals a fresh session's window after the lane's
    premise (with the lane's seed), and the session keeps only its own tokens."""
    prompt = PROMPTS["a"]
    window = runner.propose(ProposeCall("lanes", 0, 0, prompt, 4, sampling, seed=7, want_probs=True,
                                        num_alternatives=2))
    drafted = window.draft_tokens
    lanes = (Lane(len(prompt) + 3, drafted[3]), Lane(len(prompt), window.alternatives(0)[1]),
             Lane(len(prompt) + 2, window.alternatives(2)[0]))
    ahead = runner.propose(ProposeCall("lanes", 1, len(prompt) + 3, [], 3, sampling, seed=7, want_probs=True,
                                       num_alternatives=2, lanes=lanes))
    assert ahead.draft_tokens == [] and ahead.cache_len == len(prompt) + 3 and len(ahead.lanes) == 3
    for index, lane in enumerate(lanes):
        premise = (prompt + drafted)[: lane.keep_len] + [lane.token]
        alone = runner.propose(ProposeCall(f"alone{index}", 0, 0, premise, 3, sampling, seed=7, want_probs=True,
                                           num_alternatives=2))
        drawn = ahead.lanes[index]
        if sampling.greedy:  # a sampled lane has a sampler of its own: its tokens differ, its rows do not
            assert drawn.draft_tokens == alone.draft_tokens and drawn.alternative_tokens == alone.alternative_tokens
        else:
            assert torch.allclose(drawn.draft_probs.dense()[0], alone.draft_probs.dense()[0], atol=1e-4)
        rows = drawn.draft_probs.dense()[torch.arange(3), torch.tensor(drawn.draft_tokens)]
        assert rows.tolist() == list(drawn.draft_token_probs) and bool((rows > 0).all())


def test_a_lane_past_the_session_is_refused_naming_lanes(runner: DraftRunner):
    runner.propose(ProposeCall("short", 0, 0, [5, 6, 7], 2, SamplingParams(0.0), seed=1, want_probs=False))
    bad = ProposeCall("short", 1, 4, [], 2, SamplingParams(0.0), seed=1, want_probs=False, lanes=(Lane(5, 3),))
    [result] = runner.propose_batch([bad])
    assert isinstance(result, SessionError) and result.field == "lanes"


def test_lanes_and_adoption_continue_the_window_as_one_longer_window(runner: DraftRunner):
    """Greedy: a lane after the whole window, then (the session adopting it) a lane after that lane's window,
    draft what one window twice as long drafts."""
    prompt, greedy = PROMPTS["b"], SamplingParams(0.0)
    long = runner.propose(ProposeCall("long", 0, 0, prompt, 9, greedy, seed=1, want_probs=False)).draft_tokens
    window = runner.propose(ProposeCall("chain", 0, 0, prompt, 3, greedy, seed=1, want_probs=False)).draft_tokens
    n = len(prompt)
    first = runner.propose(ProposeCall("chain", 1, n + 2, [], 3, greedy, seed=1, want_probs=False,
                                       lanes=(Lane(n, 5), Lane(n + 2, window[2]))))
    second = runner.propose(ProposeCall("chain", 2, n + 5, [], 3, greedy, seed=1, want_probs=False,
                                        lanes=(Lane(n + 5, first.lanes[1].draft_tokens[2]),), adopt_lane=2))
    assert window + first.lanes[1].draft_tokens + second.lanes[0].draft_tokens == long
    assert second.cache_len == n + 5
    gone = ProposeCall("chain", 3, n, [], 3, greedy, seed=1, want_probs=False, lanes=(Lane(n, 5),), adopt_lane=2)
    [refused] = runner.propose_batch([gone])  # the last call kept one lane only
    assert isinstance(refused, SessionError) and (refused.field, refused.code) == ("adopt_lane", "NOT_FOUND")
