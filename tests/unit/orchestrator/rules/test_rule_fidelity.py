"""Fidelity of the lossy and biased rules against the closed forms of their papers.

Each test would fail if the math were wrong: measured rates are compared with formulas computed
independently here, over enough seeded trials that the tolerance is a few standard errors.
"""

from __future__ import annotations

import pytest
import torch

from specdec.distributions.divergences import divergence
from specdec.orchestrator.rules import RuleParams, make_rule
from tests.fakes import one_position_scores, scores_from_rows

VOCAB = 6


def dist(generator: torch.Generator, zeros: int = 0) -> torch.Tensor:
    probs = torch.rand(VOCAB, generator=generator) ** 3
    probs[:zeros] = 0
    return probs / probs.sum()


def one_position(rule, target: torch.Tensor, draft: torch.Tensor, trials: int, seed: int):
    """Draft one token from `draft`, judge it; return (rejections, emitted-token histogram)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.multinomial(draft, trials, replacement=True, generator=generator).tolist()
    rejections, counts = 0, torch.zeros(VOCAB)
    for token, scores in zip(tokens, one_position_scores(rule, tokens, draft, torch.stack([target, target]),
                                                         generator), strict=True):
        result = rule.accept(scores, generator)
        rejections += result.num_accepted == 0
        counts[token if result.num_accepted else result.next_token] += 1
    return rejections / trials, counts / trials


def tv(a: torch.Tensor, b: torch.Tensor) -> float:
    return 0.5 * float((a - b).abs().sum())


def test_opt_with_zero_epsilon_is_sd():
    g = torch.Generator().manual_seed(0)
    target_probs, draft_probs = torch.stack([dist(g) for _ in range(4)]), torch.stack([dist(g) for _ in range(3)])
    draft = torch.multinomial(draft_probs, 1, generator=g)[:, 0].tolist()
    scores = scores_from_rows(make_rule("sd"), draft, draft_probs, target_probs, g)
    for seed in range(50):
        sd = make_rule("sd").accept(scores, torch.Generator().manual_seed(seed))
        opt = make_rule("opt", RuleParams(epsilon=0.0)).accept(scores, torch.Generator().manual_seed(seed))
        assert sd == opt


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.1, 0.2])
def test_opt_rejection_and_bias_match_the_closed_forms(epsilon):
    g = torch.Generator().manual_seed(int(epsilon * 100))
    target, draft = dist(g, zeros=1), dist(g)
    trials = 40000
    rejection, emitted = one_position(make_rule("opt", RuleParams(epsilon=epsilon)), target, draft, trials, 1)
    expected_rejection = float((draft - target - epsilon).clamp_min(0).sum())
    expected_bias = float(torch.minimum(torch.full_like(draft, epsilon), (draft - target).clamp_min(0)).sum())
    total_variation = tv(target, draft)
    # the emitted distribution of the paper: A = min(Q, P + eps) + P(reject) * (P - Q)_+ / TV(P, Q)
    closed_form = torch.minimum(draft, target + epsilon) + expected_rejection * (target - draft).clamp_min(0) / (
        total_variation)
    assert expected_rejection + expected_bias == pytest.approx(total_variation, abs=1e-6)  # the Pareto line
    assert rejection == pytest.approx(expected_rejection, abs=4 * (0.25 / trials) ** 0.5)
    assert tv(emitted, closed_form) < 0.015
    assert tv(emitted, target) == pytest.approx(expected_bias, abs=0.015)


def test_uno_matches_its_closed_form_and_is_never_less_biased_than_opt():
    g = torch.Generator().manual_seed(3)
    for pair in range(4):
        target, draft, epsilon = dist(g), dist(g), 0.05
        rejection = (draft - target - epsilon).clamp_min(0).sum()
        kept = torch.minimum(draft, target + epsilon)
        uno_form = kept + rejection * target  # UNO recovers from P itself
        opt_form = kept + rejection * (target - draft).clamp_min(0) / tv(target, draft)
        _, uno = one_position(make_rule("uno", RuleParams(epsilon=epsilon)), target, draft, 20000, pair)
        assert tv(uno, uno_form) < 0.015
        assert tv(uno_form, target) >= tv(opt_form, target) - 1e-6


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.4])
def test_fsd_tv_keeps_every_emitted_distribution_within_threshold(threshold):
    g = torch.Generator().manual_seed(int(threshold * 100))
    rule = make_rule("fsd", RuleParams(threshold=threshold, divergence="tv"))
    for pair in range(6):
        target, draft = dist(g), dist(g)
        _, emitted = one_position(rule, target, draft, 8000, pair)
        assert tv(emitted, target) <= threshold + 0.03  # sampling slack of 8000 draws over 6 tokens
        # where the divergence is within T the draft's token stands, so the output is the draft's
        expected = draft if tv(target, draft) <= threshold else target
        assert tv(emitted, expected) < 0.03


def test_fsd_threshold_zero_samples_the_target_and_infinity_keeps_the_draft():
    g = torch.Generator().manual_seed(9)
    target, draft = dist(g), dist(g)
    _, at_zero = one_position(make_rule("fsd", RuleParams(threshold=0.0, divergence="kl")), target, draft, 8000, 0)
    _, at_inf = one_position(make_rule("fsd", RuleParams(threshold=1e9, divergence="kl")), target, draft, 8000, 0)
    assert tv(at_zero, target) < 0.03 and tv(at_inf, draft) < 0.03


def test_divergences_against_hand_computed_values():
    target, draft = torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([[0.25, 0.25, 0.5]])
    assert float(divergence("tv", target, draft)) == pytest.approx(0.5)
    assert float(divergence("reverse_kl", target, draft)) == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert float(divergence("js", target, draft)) <= torch.log(torch.tensor(2.0)).item()
    assert float(divergence("kl", target, draft)) > 10  # Q puts mass where P has none
    bucketed = divergence("tv_topk", target, draft, top_k=1)  # [0.5 | 0.5] vs [0.25 | 0.75]
    assert float(bucketed) == pytest.approx(0.25)


def test_typical_accepts_by_the_entropy_bound():
    target = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25]])
    rule = make_rule("typical", RuleParams(epsilon=0.09, delta=0.3))
    entropy = -(target[0][:3] * target[0][:3].log()).sum()
    bound = min(0.09, 0.3 * float(torch.exp(-entropy)))
    for token in range(4):
        scores = scores_from_rows(rule, [token], torch.full((1, 4), 0.25), target, torch.Generator())
        assert rule.accept(scores, torch.Generator()).num_accepted == int(float(target[0, token]) > bound)


@pytest.mark.parametrize("rule, params, field", [
    ("fsd", RuleParams(threshold=-1.0), "threshold"), ("fsd", RuleParams(threshold=float("nan")), "threshold"),
    ("fsd", RuleParams(divergence="hellinger"), "divergence"), ("opt", RuleParams(epsilon=-0.1), "epsilon"),
    ("uno", RuleParams(epsilon=float("inf")), "epsilon"), ("typical", RuleParams(delta=-1.0), "delta"),
    ("fsd", RuleParams(divergence_top_k=0), "divergence_top_k"),
])
def test_out_of_range_parameters_name_the_field(rule, params, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        make_rule(rule, params)
