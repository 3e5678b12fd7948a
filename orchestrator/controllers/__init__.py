"""Gamma controllers by name; formulas and sources in docs/algorithms.md, Gamma controllers."""

from __future__ import annotations

from dataclasses import dataclass

from specdec.orchestrator.controllers.base import GammaController, RoundStats
from specdec.orchestrator.controllers.cost import CostEstimates, CostModelGamma
from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.controllers.gammatune import GammaTune, gammatune_plus
from specdec.orchestrator.controllers.heuristic import HeuristicGamma

CONTROLLER_NAMES = ("fixed", "heuristic", "gammatune", "gammatune+", "cost")


@dataclass(frozen=True)
class ControllerParams:
    """Per-request controller hyperparameters; None means the controller's default."""

    gamma_max: int | None = None
    gamma_min: int | None = None  # gammatune
    eta: float | None = None  # gammatune: smoothing of the accepted length
    delta: int | None = None  # gammatune: growth after a fully accepted round
    confidence_threshold: float | None = None  # gammatune+: early stop of drafting
    smoothing: float | None = None  # cost: EMA weight of new measurements
    probe_every: int | None = None  # cost: rounds at gamma 0 between probes


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def make_controller(name: str, gamma: int, params: ControllerParams = ControllerParams(),
                    estimates: CostEstimates | None = None) -> GammaController:
    """Controller `name` starting at `gamma`; `cost` learns from and into the deployment's `estimates` when
    given. KeyError for an unknown name, ValueError naming a bad parameter."""
    p = params
    if name == "fixed":
        return FixedGamma(gamma)
    if name == "heuristic":
        return HeuristicGamma(gamma, **_given(gamma_max=p.gamma_max))
    if name in ("gammatune", "gammatune+"):
        kwargs = _given(eta=p.eta, delta=p.delta, gamma_min=p.gamma_min, gamma_max=p.gamma_max,
                        confidence_threshold=p.confidence_threshold)
        return gammatune_plus(**kwargs, gamma=max(gamma, 1)) if name == "gammatune+" else GammaTune(
            **kwargs, gamma=max(gamma, 1))
    if name == "cost":
        return CostModelGamma(gamma, **_given(gamma_max=p.gamma_max, smoothing=p.smoothing, probe_every=p.probe_every),
                              estimates=estimates)
    raise KeyError(name)


__all__ = ["CONTROLLER_NAMES", "ControllerParams", "CostEstimates", "GammaController", "RoundStats",
           "make_controller"]
