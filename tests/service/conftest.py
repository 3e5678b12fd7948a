"""Real gRPC servers on loopback (port 0) with the demo pair, started in-process without Ray."""

from __future__ import annotations

import pytest

from specdec.config import ServeConfig, resolve_model
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor
from tests.helpers import BackgroundLoop, TargetOracle


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    loop = BackgroundLoop()
    draft = DraftServiceActor(LoadSpec(resolve_model("demo:draft")))
    target = TargetServiceActor(LoadSpec(resolve_model("demo:target")))
    draft_address = loop.run(draft.ready())
    target_address = loop.run(target.ready())
    # No load governor here: a test of the cost controller must not find it held at target-only.
    config = ServeConfig().with_overrides(orchestrator={"port": 0}, defaults={"load_governor": False},
                                          jobs={"journal_path": str(tmp_path_factory.mktemp("jobs") / "jobs.sqlite")})
    orchestrator = OrchestratorActor(config, [draft_address], [target_address])
    address = loop.run(orchestrator.ready())
    yield {"draft": draft_address, "target": target_address, "orchestrator": address, "loop": loop,
           "draft_actor": draft, "target_actor": target}
    loop.stop()


@pytest.fixture(scope="session")
def oracle():
    return TargetOracle()
