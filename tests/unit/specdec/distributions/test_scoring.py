"""The statistics the target computes beside its logits: candidates land where the uniforms say, with
exactly the probabilities of the rule's recovery distribution; residuals, entropies, divergences."""

from __future__ import annotations

import pytest
import torch

from specdec.distributions.divergences import divergence
from specdec.distributions.scoring import StatisticsSpec, inverse_cdf, residual_or_target, window_statistics


def test_inverse_cdf_gives_each_token_its_share_of_the_unit_interval():
    rows = torch.tensor([[0.0, 0.25, 0.0, 0.5, 0.25, 0.0], [3.0, 0.0, 1.0, 0.0, 0.0, 0.0]])  # weights, unnormalized
    grid = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    for row in rows:
        tokens = inverse_cdf(row.expand(grid.shape[0], -1), grid)
        shares = torch.bincount(tokens, minlength=row.shape[0]).double() / grid.shape[0]
        assert torch.allclose(shares, (row / row.sum()).double(), atol=1e-4)
        assert bool((row[tokens] > 0).all())


def test_inverse_cdf_never_lands_on_a_zero_weight_token_at_the_top_end():
    row = torch.tensor([[0.2, 0.8, 0.0, 0.0]])
    edge = torch.tensor([1.0 - 1e-12, 0.999999999], dtype=torch.float64)
    assert inverse_cdf(row.expand(2, -1), edge).tolist() == [1, 1]


def test_residual_falls_back_to_the_target_where_it_has_no_mass():
    target = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    draft = torch.tensor([[0.5, 0.5], [0.6, 0.4]])
    assert torch.allclose(residual_or_target(target, draft), torch.tensor([[0.5, 0.5], [0.0, 0.4]]))


def test_window_statistics_candidates_follow_the_recovery_distributions():
    g = torch.Generator().manual_seed(0)
    target = torch.softmax(torch.randn(3, 8, generator=g) * 2, -1)  # gamma = 2
    draft = torch.softmax(torch.randn(2, 8, generator=g) * 2, -1)
    tokens = torch.tensor([3, 5])
    trials = 20_000
    counts = {kind: torch.zeros(3, 8) for kind in ("residual", "target")}
    for _ in range(trials):
        uniforms = torch.rand(3, generator=g, dtype=torch.float64)
        for kind in counts:
            computed = window_statistics(StatisticsSpec(recover=kind), target, tokens, uniforms, draft)
            counts[kind][torch.arange(3), computed.candidates] += 1
    residual = (target[:2] - draft).clamp_min(0)
    expected = {"residual": torch.cat([residual / residual.sum(-1, keepdim=True), target[2:]]), "target": target}
    for kind in counts:
        assert torch.allclose(counts[kind] / trials, expected[kind], atol=0.015), kind
    computed = window_statistics(StatisticsSpec(recover="residual"), target, tokens, torch.zeros(3), draft)
    assert computed.target_token_probs.tolist() == pytest.approx([float(target[0, 3]), float(target[1, 5])])


def test_window_statistics_entropy_and_divergence():
    target = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]])
    draft = torch.tensor([[0.25, 0.25, 0.5]])
    spec = StatisticsSpec(entropy=True, divergence="tv")
    computed = window_statistics(spec, target, torch.tensor([2]), torch.empty(0), draft)
    assert computed.entropies.tolist() == pytest.approx([float(torch.log(torch.tensor(2.0)))])
    assert computed.divergences.tolist() == pytest.approx([float(divergence("tv", target[:1], draft))])
    assert computed.candidates.numel() == 0


@pytest.mark.parametrize("spec, field", [
    (dict(recover="nearest"), "recover"), (dict(divergence="hellinger"), "divergence"),
    (dict(divergence_top_k=0), "divergence_top_k")])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        StatisticsSpec(**spec)


def test_missing_inputs_are_refused():
    target = torch.full((2, 4), 0.25)
    with pytest.raises(ValueError, match="draft_probs"):
        window_statistics(StatisticsSpec(recover="residual"), target, torch.tensor([1]), torch.zeros(2))
    with pytest.raises(ValueError, match="uniforms"):
        window_statistics(StatisticsSpec(recover="target"), target, torch.tensor([1]), torch.zeros(1))
