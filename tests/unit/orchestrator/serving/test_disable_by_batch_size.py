"""vLLM's disable_by_batch_size in the orchestrator: at that many requests in flight, a new request that
leaves gamma and the controller unset decodes target-only; one that sets gamma keeps it."""

from __future__ import annotations

from transformers import AutoTokenizer

from specdec.config import DefaultsConfig, LimitsConfig, resolve_model
from specdec.orchestrator.serving.core import GenerateParams, Orchestrator, Route
from specdec.types import ModelInfo

INFO = ModelInfo("demo", vocab_size=2048, max_context=512, tokenizer_fingerprint="f", device="cpu", dtype="float32",
                 eos_token_id=0)


class Idle:
    """A proposer and scorer that are never called: only `prepare` runs here."""

    available = True


def test_speculation_is_off_for_new_requests_at_the_batch_size():
    route = Route(Idle(), Idle())
    orchestrator = Orchestrator([route], AutoTokenizer.from_pretrained(resolve_model("demo:target")), INFO, INFO,
                                DefaultsConfig(gamma=4, gamma_controller="heuristic", disable_by_batch_size=2),
                                LimitsConfig())
    route.active = 1
    assert orchestrator.prepare(GenerateParams("def f():")).gamma == 4
    route.active = 2
    prepared = orchestrator.prepare(GenerateParams("def f():"))
    assert (prepared.gamma, prepared.controller_name) == (0, "fixed")
    assert orchestrator.prepare(GenerateParams("def f():", gamma=3)).gamma == 3
