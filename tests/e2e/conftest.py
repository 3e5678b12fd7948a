"""A local Ray cluster with the whole deployment: draft and target actors in a placement group and the
named orchestrator actor, exactly as `specdec serve` starts them."""

from __future__ import annotations

import logging

import pytest
import ray

from specdec.config import ServeConfig
from specdec.orchestrator.serving.launch import deploy
from tests.helpers import TargetOracle


@pytest.fixture(scope="session")
def ray_cluster():
    # Logical CPUs: the deployments of these tests reserve more bundles than this machine has cores.
    ray.init(num_cpus=6, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def deployment(ray_cluster, tmp_path_factory):
    journal = tmp_path_factory.mktemp("jobs") / "jobs.sqlite"  # never the user's own journal under ~/.specdec
    dep = deploy(ServeConfig().with_overrides(orchestrator={"port": 0}, jobs={"journal_path": str(journal)}))
    yield dep
    dep.stop()


@pytest.fixture(scope="session")
def oracle():
    return TargetOracle()
