"""The round loop with the real runners over Markov-chain models (no RPC, no Ray).

The strongest losslessness check: whole generated sequences, drafted and verified over several rounds
with rollback, must follow the target's warped distribution (chi-square over every sequence).
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
import torch
from scipy.stats import chisquare

from specdec.distributions.scoring import StatisticsSpec
from specdec.distributions.warps import warped_probs
from specdec.orchestrator.adapters.local import LocalProposer, LocalScorer
from specdec.orchestrator.controllers import ControllerParams, make_controller
from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.round.engine import TARGET_RUN_TOKENS, GenerationRequest, generate
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import Acceptance, make_rule
from specdec.services.draft.runner import DraftRunner
from specdec.services.target.runner import TargetRunner
from specdec.types import SamplingParams
from tests.fakes import MarkovLM, random_table

VOCAB = 4
LENGTH = 3


def make_pair(seed: int = 0):
    target = MarkovLM(random_table(VOCAB, seed))
    draft = MarkovLM(random_table(VOCAB, seed) + random_table(VOCAB, seed + 100, scale=1.0))
    return LocalProposer(DraftRunner(draft)), LocalScorer(TargetRunner(target)), target


def run(proposer, scorer, rule, gamma: int, sampling: SamplingParams, seed: int, max_new_tokens: int = LENGTH,
        prompt=(0,), stop=frozenset(), max_context: int = 64, num_draft_sequences: int = 1, overlap: bool = False,
        lanes: int = 0):
    request = GenerationRequest(request_id=f"r{seed}", prompt_ids=list(prompt), max_new_tokens=max_new_tokens,
                                sampling=sampling, seed=seed, max_context=max_context, stop_token_ids=stop,
                                num_draft_sequences=num_draft_sequences, overlap=overlap, speculation_lanes=lanes)
    stats = RequestStats(request.request_id, rule.name, gamma, len(prompt))

    async def collect():
        out = []
        async for emitted in generate(request, proposer, scorer, rule, FixedGamma(gamma), stats):
            out += emitted
        await proposer.end_session(request.request_id)
        await scorer.end_session(request.request_id)
        return out

    return asyncio.run(collect()), stats


def sequence_probs(table: torch.Tensor, sampling: SamplingParams, first: int = 0) -> dict[tuple, float]:
    """Exact probability of every length-LENGTH continuation under the warped Markov target."""
    step = warped_probs(table, sampling)
    out = {}
    for seq in itertools.product(range(VOCAB), repeat=LENGTH):
        prob, last = 1.0, first
        for token in seq:
            prob, last = prob * float(step[last, token]), token
        out[seq] = prob
    return out


def chi_square_pvalue(samples: list[tuple], probs: dict[tuple, float]) -> float:
    keys = [k for k, p in probs.items() if p > 0]
    assert all(s in probs and probs[s] > 0 for s in samples), "a sequence the target cannot produce"
    observed = [sum(1 for s in samples if s == k) for k in keys]
    total = sum(probs[k] for k in keys)
    return chisquare(observed, [probs[k] / total * len(samples) for k in keys]).pvalue


WARPS = [SamplingParams(1.0), SamplingParams(0.7, top_k=3), SamplingParams(1.3, top_p=0.8)]
WARP_IDS = ["t1", "t0.7-topk3", "t1.3-topp0.8"]
SAMPLES = 2000  # whole sequences per chi-square test (64 cells); the lossy rule below is caught at this size


def every_warp(*configurations: tuple) -> list:
    """Each configuration under every warp: the cases that change how the warps reach the rule."""
    return [pytest.param(*config, warp, id=f"{'-'.join(map(str, config))}-{name}")
            for config in configurations for warp, name in zip(WARPS, WARP_IDS, strict=True)]


def plain_warp(*configurations: tuple) -> list:
    """Each configuration at T=1 only: the cases that change the drafting, not the warps."""
    return [pytest.param(*config, WARPS[0], id=f"{'-'.join(map(str, config))}-t1") for config in configurations]


@pytest.mark.parametrize("gamma, overlap, lanes, sampling",
                         every_warp((0, False, 0), (3, False, 0), (2, True, 2))
                         + plain_warp((1, False, 0), (1, True, 0), (2, True, 0)))
def test_sd_sequences_follow_the_warped_target(gamma, overlap, lanes, sampling):
    proposer, scorer, target = make_pair()
    samples = [tuple(run(proposer, scorer, make_rule("sd"), gamma, sampling, seed, overlap=overlap, lanes=lanes)[0])
               for seed in range(SAMPLES)]
    assert chi_square_pvalue(samples, sequence_probs(target.table, sampling)) > 1e-3


@pytest.mark.parametrize("gamma, num_draft_sequences, sampling", every_warp((1, 3)) + plain_warp((3, 2)))
def test_multi_draft_sd_sequences_follow_the_warped_target(gamma, num_draft_sequences, sampling):
    proposer, scorer, target = make_pair()
    samples = [tuple(run(proposer, scorer, make_rule("sd"), gamma, sampling, seed,
                         num_draft_sequences=num_draft_sequences)[0])
               for seed in range(SAMPLES)]
    assert chi_square_pvalue(samples, sequence_probs(target.table, sampling)) > 1e-3


def test_more_drafts_mean_fewer_rejections():
    proposer, scorer, _ = make_pair()
    rates = []
    for num_draft_sequences in (1, 2, 4):
        accepted = drafted = 0
        for seed in range(300):
            _, stats = run(proposer, scorer, make_rule("sd"), 3, WARPS[0], seed, max_new_tokens=12,
                           num_draft_sequences=num_draft_sequences)
            accepted, drafted = accepted + stats.num_accepted_tokens, drafted + stats.num_draft_tokens
        rates.append(accepted / drafted)
    assert rates[0] < rates[1] < rates[2]


class AcceptEverything:
    """A wrong rule: keeps every draft token. The statistical test must catch it."""

    name, needs_probs, multi_window, statistics = "wrong", True, False, StatisticsSpec(recover="residual")

    def accept(self, scores, generator):
        return Acceptance(scores.gamma, int(scores.candidates[-1]))  # the bonus token


def test_the_statistical_test_catches_a_lossy_rule():
    proposer, scorer, target = make_pair()
    samples = [tuple(run(proposer, scorer, AcceptEverything(), 2, WARPS[0], seed)[0]) for seed in range(SAMPLES)]
    assert chi_square_pvalue(samples, sequence_probs(target.table, WARPS[0])) < 1e-6


@pytest.mark.parametrize("gamma, num_draft_sequences, overlap, lanes", [
    (0, 1, False, 0), (1, 1, False, 0), (2, 1, False, 0), (5, 1, False, 0), (3, 3, False, 0), (1, 1, True, 0),
    (4, 1, True, 0), (4, 1, True, 2), (3, 1, True, 3)])
def test_greedy_equals_target_only_greedy(gamma, num_draft_sequences, overlap, lanes):
    proposer, scorer, target = make_pair(seed=3)
    out, stats = run(proposer, scorer, make_rule("greedy"), gamma, SamplingParams(0.0), 0, max_new_tokens=20,
                     num_draft_sequences=num_draft_sequences, overlap=overlap, lanes=lanes)
    expected, last = [], 0
    for _ in range(20):
        last = int(target.table[last].argmax())
        expected.append(last)
    assert out == expected
    assert stats.output_tokens == 20 and stats.finish_reason == "length"


class CountingProposer(LocalProposer):
    calls = 0

    async def propose(self, call):
        self.calls += 1
        return await super().propose(call)


class CountingScorer(LocalScorer):
    def __init__(self, runner):
        super().__init__(runner)
        self.calls = []

    async def verify(self, call):
        self.calls.append(call)
        return await super().verify(call)


def test_target_only_rounds_are_decoded_runs():
    _, _, target = make_pair(seed=3)
    scorer = CountingScorer(TargetRunner(target))
    out, stats = run(LocalProposer(DraftRunner(MarkovLM(target.table))), scorer, make_rule("sd"), 0,
                     SamplingParams(1.0), 5, max_new_tokens=20)
    runs = [call.decode_tokens for call in scorer.calls]
    assert runs == [1, TARGET_RUN_TOKENS, TARGET_RUN_TOKENS, 19 - 2 * TARGET_RUN_TOKENS]  # the first alone, for latency
    assert [len(call.uniforms) for call in scorer.calls] == runs  # one uniform per decoded position
    assert len(out) == 20 and stats.num_rounds == 4 and stats.num_verify_forwards == 20
    assert stats.num_drafts == 0 and stats.gamma_trace == [0, 0, 0, 0]


class ArgmaxAfterCandidates:
    """A rule that asks the target for candidates (so a decoded run feeds them back) but always emits the
    argmax: every run must be cut where the two differ, and the output is the target's greedy path."""

    name, multi_window, needs_probs = "argmax-after-candidates", False, True
    statistics = StatisticsSpec(recover="target")

    def accept(self, scores, generator):
        return Acceptance(0, int(scores.target_argmax[0]))


def test_a_decoded_run_is_cut_where_the_rule_picks_another_token():
    proposer, scorer, target = make_pair(seed=3)
    greedy = run(proposer, scorer, make_rule("greedy"), 0, SamplingParams(0.0), 0, max_new_tokens=24)[0]
    counting = CountingScorer(TargetRunner(target))
    out, stats = run(proposer, counting, ArgmaxAfterCandidates(), 0, SamplingParams(1.0), 0, max_new_tokens=24)
    assert out == greedy
    assert stats.num_rounds > 4  # runs were cut: more calls than 1 + 23 / 8
    assert target.sessions == {}


def test_overlap_verifies_pre_drafted_windows_and_rolls_back_on_rejection():
    _, scorer, target = make_pair(seed=3)
    proposer = CountingProposer(DraftRunner(MarkovLM(target.table.clone())))  # the draft agrees with the target
    out, stats = run(proposer, scorer, make_rule("greedy"), 3, SamplingParams(0.0), 0, max_new_tokens=30,
                     overlap=True)
    assert stats.num_accepted_tokens == stats.num_draft_tokens  # a perfect draft: every window accepted
    assert proposer.calls == stats.num_rounds  # one call each round: the pre-draft of the next window
    assert stats.num_rounds <= 30 // 3 + 1  # windows of 3 without bonus tokens
    lossy_proposer, lossy_scorer, _ = make_pair(seed=3)
    out_lossy, lossy = run(lossy_proposer, lossy_scorer, make_rule("greedy"), 3, SamplingParams(0.0), 0,
                           max_new_tokens=30, overlap=True)
    assert out_lossy == out and lossy.num_accepted_tokens < lossy.num_draft_tokens


def swapped_top_two(table: torch.Tensor) -> torch.Tensor:
    """A draft that prefers the target's second choice in every state: its own second choice is the target's
    first, so every greedy rejection's recovered token is the draft's most likely other token."""
    draft = table.clone()
    top2 = table.topk(2, dim=-1).indices
    rows = torch.arange(table.shape[0])
    draft[rows, top2[:, 0]], draft[rows, top2[:, 1]] = table[rows, top2[:, 1]], table[rows, top2[:, 0]]
    return draft


def test_speculation_lanes_pre_draft_for_rejections():
    _, scorer, target = make_pair(seed=3)
    draft = MarkovLM(swapped_top_two(target.table))
    proposer = CountingProposer(DraftRunner(draft))
    out, stats = run(proposer, scorer, make_rule("greedy"), 3, SamplingParams(0.0), 0, max_new_tokens=30,
                     overlap=True, lanes=1)
    plain, plain_stats = run(LocalProposer(DraftRunner(MarkovLM(draft.table))), make_pair(seed=3)[1],
                             make_rule("greedy"), 3, SamplingParams(0.0), 0, max_new_tokens=30, overlap=True)
    assert out == plain  # the target's greedy output either way
    assert stats.num_accepted_tokens_per_pos[:1] == [0]  # every window is rejected at its first token...
    drafting_rounds = sum(1 for gamma in stats.gamma_trace[1:] if gamma)  # every round that drafted, but the first
    assert stats.num_lane_hits == stats.num_pre_drafted == drafting_rounds > 20  # ...and lane 1 guessed it
    assert plain_stats.num_pre_drafted == 0
    assert stats.num_lane_draft_tokens > 0
    assert draft.sessions == {}  # the session was ended with the request (lanes are forks of it)


def test_same_seed_same_output_and_sessions_freed():
    proposer, scorer, target = make_pair()
    first = [run(proposer, scorer, make_rule("sd"), 3, WARPS[0], seed, max_new_tokens=12)[0] for seed in range(5)]
    again = [run(proposer, scorer, make_rule("sd"), 3, WARPS[0], seed, max_new_tokens=12)[0] for seed in range(5)]
    assert first == again
    assert len({tuple(x) for x in first}) > 1
    assert target.sessions == {} and proposer.runner.lm.sessions == {}


def test_stop_token_ends_the_request_and_budget_truncates():
    proposer, scorer, target = make_pair(seed=3)
    greedy_path = run(proposer, scorer, make_rule("greedy"), 4, SamplingParams(0.0), 0, max_new_tokens=10)[0]
    stop = greedy_path[2]
    out, stats = run(proposer, scorer, make_rule("greedy"), 4, SamplingParams(0.0), 0, max_new_tokens=10,
                     stop=frozenset({stop}))
    assert out == greedy_path[: greedy_path.index(stop) + 1] and stats.finish_reason == "stop"


def test_stats_count_drafts_and_accepted_positions():
    proposer, scorer, _ = make_pair()
    _, stats = run(proposer, scorer, make_rule("sd"), 3, WARPS[0], 1, max_new_tokens=40)
    assert stats.num_draft_tokens == 3 * stats.num_drafts or stats.num_draft_tokens < 3 * stats.num_drafts
    assert stats.num_accepted_tokens == sum(stats.num_accepted_tokens_per_pos)
    assert stats.num_accepted_tokens_per_pos == sorted(stats.num_accepted_tokens_per_pos, reverse=True)
    assert stats.output_tokens == 40
    # gamma > 0 every round, but for one that starts at the budget's last token
    assert stats.num_rounds - stats.num_drafts == stats.gamma_trace.count(0) <= 1
    assert 0 not in stats.gamma_trace[:-1]
    assert stats.mean_acceptance_length == pytest.approx(1 + stats.num_accepted_tokens / stats.num_drafts)


class Recording:
    """Wraps a rule; records per round whether a draft token was rejected and the TV distance of every
    position the rule judged, computed here from the two Markov tables (independently of the rule) along the
    committed tokens, which it follows from what the rule emits. One request at a time: `start` each."""

    def __init__(self, rule, target: MarkovLM, draft: MarkovLM):
        self.rule, self.name, self.needs_probs = rule, rule.name, True
        self.multi_window, self.statistics = False, rule.statistics
        tv_by_state = 0.5 * (torch.softmax(target.table, -1) - torch.softmax(draft.table, -1)).abs().sum(-1)
        self.tv_by_state = tv_by_state.tolist()  # TV of the next position after each last token
        self.rejections = 0
        self.judged_tv = 0.0
        self.last = 0

    def start(self, prompt: list[int]) -> None:
        self.last = prompt[-1]

    def accept(self, scores, generator):
        result = self.rule.accept(scores, generator)
        draft = scores.draft_tokens.tolist()
        if draft:  # a round at the budget's last token judges nothing
            self.judge(draft, result)
        self.last = result.next_token
        return result

    def judge(self, draft: list[int], result) -> None:
        judged = min(result.num_accepted + 1, len(draft))
        previous = [self.last] + draft[: judged - 1]
        self.judged_tv += sum(self.tv_by_state[token] for token in previous)
        self.rejections += result.num_accepted < len(draft)


def expected_tv_along_the_target(target: MarkovLM, draft: MarkovLM, length: int) -> float:
    """sum over positions n = 1..length of E[TV(P_n, Q_n)] with the prefix drawn from the target itself."""
    p = torch.softmax(target.table, -1)
    q = torch.softmax(draft.table, -1)
    tv_by_state = 0.5 * (p - q).abs().sum(-1)  # [vocab]: TV after each last token
    state = torch.nn.functional.one_hot(torch.tensor(0), VOCAB).float()
    total = 0.0
    for _ in range(length):
        total += float(state @ tv_by_state)
        state = state @ p
    return total


@pytest.mark.parametrize("gamma", [1, 6])
def test_rejections_match_the_sum_of_tv_distances(gamma):
    """Yin et al. 2024, Theorem 1: every judged position rejects with probability TV(P_n, Q_n), so expected
    rejections equal the expected TV summed over judged positions; summed over all positions (every token
    drafted) it is the bound that bonus tokens only lower."""
    proposer, scorer, target = make_pair()
    recording = Recording(make_rule("sd"), target, proposer.runner.lm)
    runs, length = 2000, 8
    for seed in range(runs):
        recording.start([0])
        run(proposer, scorer, recording, gamma, WARPS[0], seed, max_new_tokens=length)
    mean_rejections, mean_judged_tv = recording.rejections / runs, recording.judged_tv / runs
    assert mean_rejections == pytest.approx(mean_judged_tv, abs=4 * (length / 4 / runs) ** 0.5)
    assert mean_rejections <= expected_tv_along_the_target(target, proposer.runner.lm, length) + 0.05


def test_tokens_per_round_match_the_per_position_acceptance_product():
    proposer, scorer, _ = make_pair(seed=5)
    gamma, drafts, per_pos, emitted = 4, 0, [0] * 4, 0
    for seed in range(100):
        _, stats = run(proposer, scorer, make_rule("sd"), gamma, WARPS[0], seed, max_new_tokens=400,
                       max_context=1024)
        assert stats.gamma_trace.count(gamma) >= stats.num_rounds - gamma  # the budget clamps only the last few
        drafts += stats.num_drafts
        padded = (stats.num_accepted_tokens_per_pos + [0] * gamma)[:gamma]
        per_pos = [a + b for a, b in zip(per_pos, padded, strict=True)]
        emitted += stats.num_drafts + stats.num_accepted_tokens
    reached = [drafts] + per_pos[:-1]
    alphas = [accepted / reach for accepted, reach in zip(per_pos, reached, strict=True)]
    predicted, survive = 1.0, 1.0
    for alpha in alphas:
        survive *= alpha
        predicted += survive
    assert emitted / drafts == pytest.approx(predicted, rel=0.01)  # exact but for the clamped last rounds
    assert 1.0 < predicted < gamma + 1


@pytest.mark.parametrize("rule_name", ["sd", "fsd", "opt", "uno", "typical"])
@pytest.mark.parametrize("controller_name", ["fixed", "heuristic", "gammatune", "gammatune+", "cost"])
def test_every_rule_runs_with_every_controller(rule_name, controller_name):
    proposer, scorer, _ = make_pair()
    request = GenerationRequest("combo", [0], 30, SamplingParams(0.8, top_k=3), 1, 256)
    stats = RequestStats("combo", rule_name, 3, 1)

    async def collect():
        out = []
        async for emitted in generate(request, proposer, scorer, make_rule(rule_name),
                                      make_controller(controller_name, 3), stats):
            out += emitted
        return out

    out = asyncio.run(collect())
    assert len(out) == 30 and all(0 <= t < VOCAB for t in out)
    assert len(stats.gamma_trace) == stats.num_rounds and sum(stats.gamma_trace) == stats.num_draft_tokens


def test_low_draft_confidence_stops_drafting_early():
    proposer, scorer, _ = make_pair()
    controller = make_controller("gammatune+", 5, ControllerParams(confidence_threshold=1.0))
    request = GenerationRequest("early", [0], 12, SamplingParams(1.0), 2, 256)
    stats = RequestStats("early", "sd", 5, 1)

    async def collect():
        async for _ in generate(request, proposer, scorer, make_rule("sd"), controller, stats):
            pass

    asyncio.run(collect())
    assert set(stats.gamma_trace) <= {0, 1}  # every drafted token is below probability 1: stop after one
    assert stats.num_drafts > 0
