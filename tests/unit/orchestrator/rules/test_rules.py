"""Acceptance rules: table-driven greedy cases, seeded determinism, statistical exactness of sd."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from specdec.orchestrator.rules import RoundScores, make_rule
from tests.fakes import scores_from_rows


def scores(draft, argmax, **fields) -> RoundScores:
    return RoundScores(draft_tokens=torch.tensor(draft, dtype=torch.long),
                       target_argmax=torch.tensor(argmax, dtype=torch.long), **fields)


@pytest.mark.parametrize(
    "draft, argmax, accepted, next_token",
    [
        ([], [7], 0, 7),  # gamma = 0: the target's own token
        ([1, 2, 3], [1, 2, 3, 4], 3, 4),  # all accepted: bonus token
        ([1, 2, 3], [5, 2, 3, 4], 0, 5),  # first rejected: the target's token replaces it
        ([1, 2, 3], [1, 9, 3, 4], 1, 9),  # later draft tokens after a mismatch never count
        ([1, 2, 3], [1, 2, 8, 4], 2, 8),
        ([4], [4, 4], 1, 4),
    ],
)
def test_greedy_table(draft, argmax, accepted, next_token):
    result = make_rule("greedy").accept(scores(draft, argmax), torch.Generator())
    assert (result.num_accepted, result.next_token) == (accepted, next_token)


def test_round_scores_checks_shapes():
    with pytest.raises(ValueError, match="target_argmax"):
        scores([1, 2], [1, 2])
    with pytest.raises(ValueError, match="candidates"):
        scores([1], [1, 2], candidates=torch.tensor([3]))
    with pytest.raises(ValueError, match="draft_token_probs"):
        scores([1, 2], [1, 2, 3], draft_token_probs=torch.tensor([0.5]))
    with pytest.raises(ValueError, match="target_probs"):
        scores([1], [1, 2], target_probs=torch.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="draft_probs"):
        scores([1], [1, 2], draft_probs=torch.full((1, 5), 0.2), target_probs=torch.full((2, 4), 0.25))


def random_dist(vocab: int, generator: torch.Generator, zeros: int = 0) -> torch.Tensor:
    probs = torch.rand(vocab, generator=generator) ** 2
    probs[:zeros] = 0
    return probs / probs.sum()


def sd_round(draft_probs: torch.Tensor, target_probs: torch.Tensor, generator: torch.Generator):
    """Draft gamma tokens from draft_probs (position-independent toy model), then run the sd rule."""
    draft = [int(torch.multinomial(row, 1, generator=generator)) for row in draft_probs]
    rule = make_rule("sd")
    return rule.accept(scores_from_rows(rule, draft, draft_probs, target_probs, generator), generator), draft


def test_sd_is_deterministic_under_a_seed():
    g = torch.Generator().manual_seed(3)
    target_probs = torch.stack([random_dist(16, g) for _ in range(4)])
    draft_probs = torch.stack([random_dist(16, g) for _ in range(3)])
    runs = [[sd_round(draft_probs, target_probs, torch.Generator().manual_seed(s))[0] for s in range(20)]
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({(r.num_accepted, r.next_token) for r in runs[0]}) > 1  # the seed matters


@pytest.mark.parametrize("target_zeros, draft_zeros", [(0, 0), (3, 0), (0, 3), (2, 4)])
def test_sd_first_emitted_token_follows_the_target(target_zeros, draft_zeros):
    """Per position: P(emit x) = q(x) min(1, p/q) + P(reject) residual(x) = p(x). Checked by chi-square,
    including supports that differ (truncating warps on one side)."""
    vocab, trials = 8, 20000
    g = torch.Generator().manual_seed(11 + target_zeros + 10 * draft_zeros)
    target_probs = torch.stack([random_dist(vocab, g, target_zeros) for _ in range(2)])
    draft_probs = random_dist(vocab, g, draft_zeros)[None].flip(-1)
    counts = torch.zeros(vocab)
    for _ in range(trials):
        result, draft = sd_round(draft_probs, target_probs, g)
        counts[draft[0] if result.num_accepted else result.next_token] += 1
    expected = target_probs[0] * trials
    support = expected > 0
    assert counts[~support].sum() == 0
    assert chisquare(counts[support].numpy(), expected[support].numpy()).pvalue > 1e-3


def test_sd_acceptance_rate_is_one_minus_tv():
    vocab, trials = 6, 20000
    g = torch.Generator().manual_seed(5)
    target_probs = torch.stack([random_dist(vocab, g) for _ in range(2)])
    draft_probs = torch.stack([random_dist(vocab, g)])
    accepted = sum(sd_round(draft_probs, target_probs, g)[0].num_accepted for _ in range(trials))
    expected = float(torch.minimum(target_probs[0], draft_probs[0]).sum())
    assert abs(accepted / trials - expected) < 4 * (expected * (1 - expected) / trials) ** 0.5


def test_sd_rejects_missing_statistics():
    with pytest.raises(ValueError, match="sd needs draft_token_probs and target_token_probs and candidates"):
        make_rule("sd").accept(scores([1], [1, 2]), torch.Generator())
