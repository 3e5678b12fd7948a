"""Bytes on the wire per emitted token do not grow with the vocabulary: the draft's distributions travel as
their top-K entries and the target answers with a few numbers per position, at V = 2048 (the demo pair)
as at V = 128k (a random-weight Llama built here). Greedy rounds send token ids only."""

from __future__ import annotations

import pytest

from specdec.config import ServeConfig
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor
from tests.helpers import BackgroundLoop, random_llama

BIG_VOCAB = 128_000
MAX_BYTES_PER_TOKEN = 1024


@pytest.fixture(scope="module")
def big_vocab(tmp_path_factory):
    """Draft and target services on one random Llama of 128k tokens (the draft drafts for itself: the
    figure measured is bytes, not speed), and an orchestrator."""
    path = random_llama(tmp_path_factory.mktemp("llama128k"), BIG_VOCAB, seed=1)
    loop = BackgroundLoop()
    draft, target = DraftServiceActor(LoadSpec(path)), TargetServiceActor(LoadSpec(path))
    addresses = loop.run(draft.ready()), loop.run(target.ready())
    config = ServeConfig().with_overrides(
        draft={"model": path}, target={"model": path}, orchestrator={"port": 0},
        defaults={"load_governor": False}, jobs={"journal_path": str(tmp_path_factory.mktemp("jobs") / "j.sqlite")})
    orchestrator = OrchestratorActor(config, [addresses[0]], [addresses[1]])
    yield loop.run(orchestrator.ready())
    loop.stop()


def bytes_per_token(address: str, prompt: str, temperature: float) -> tuple[float, dict]:
    """Serial rounds: with overlap the lanes' windows add bytes by their number, which the draft's measured idle
    time sets (not the vocabulary)."""
    with Client(address) as client:
        out = client.generate(prompt, max_new_tokens=48, temperature=temperature, rule="sd", gamma=4, seed=3,
                              ignore_eos=True, overlap=False)
    return out.stats["wire_bytes"] / out.stats["output_tokens"], out.stats


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_bytes_per_emitted_token_do_not_grow_with_the_vocabulary(servers, big_vocab, temperature):
    small, small_stats = bytes_per_token(servers["orchestrator"], "def fibonacci(n):\n", temperature)
    big, big_stats = bytes_per_token(big_vocab, "t5 t7 t99 t3", temperature)
    print(f"\nT={temperature:g}: wire bytes per emitted token {small:.0f} at V=2048 (mean acceptance length "
          f"{small_stats['mean_acceptance_length']:.2f}), {big:.0f} at V={BIG_VOCAB} "
          f"({big_stats['mean_acceptance_length']:.2f})")
    assert small_stats["output_tokens"] == big_stats["output_tokens"] == 48
    assert small <= MAX_BYTES_PER_TOKEN and big <= MAX_BYTES_PER_TOKEN
    if temperature == 0:  # token ids only: a few bytes a token
        assert small < 64 and big < 64
