"""Serve config: the shipped YAML equals the defaults; bad keys and values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from specdec.config import ServeConfig, resolve_model

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def test_demo_yaml_spells_out_the_defaults():
    assert ServeConfig.load(DEPLOY / "demo.yaml") == ServeConfig()


def test_demo_models_resolve_to_shipped_checkpoints():
    for name in ("demo:draft", "demo:target"):
        assert (Path(resolve_model(name)) / "config.json").exists()
    assert resolve_model("org/model") == "org/model"


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"draft": {"modle": "x"}}, "draft.modle"),
        ({"bogus": 1}, "bogus"),
        ({"placement": {"strategy": "NEAR"}}, "placement.strategy"),
        ({"placement": {"accelerator": "tpu"}}, "placement.accelerator"),
        ({"defaults": {"gamma": 99}}, "defaults.gamma"),
        ({"draft": {"model": "x", "kind": "medusa"}}, "draft.kind"),
        ({"target": {"model": "x", "kind": "head"}}, "target.kind"),
        ({"placement": "PACK"}, "placement"),
        ({"defaults": {"overlap": "sometimes"}}, "defaults.overlap"),
    ],
)
def test_bad_config_names_the_key(raw, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ServeConfig.from_dict(raw)


def test_overrides_replace_single_keys():
    config = ServeConfig().with_overrides(orchestrator={"port": 0})
    assert config.orchestrator.port == 0 and config.orchestrator.host == "127.0.0.1"


def test_every_serve_config_in_deploy_loads():
    configs = {path.name: ServeConfig.load(path) for path in DEPLOY.glob("serve-*.yaml")}
    assert configs["serve-one-node-two-gpus.yaml"].placement.strategy == "PACK"
    assert configs["serve-one-node-two-gpus.yaml"].placement.accelerator == "gpu"
    assert configs["serve-two-nodes.yaml"].placement.strategy == "STRICT_SPREAD"
    assert configs["serve-replicas.yaml"].placement.target_replicas == 2


def test_cluster_yamls_have_what_ray_up_needs():
    import yaml

    for name, provider in (("cluster-onprem.yaml", "local"), ("cluster-aws.yaml", "aws")):
        text = (DEPLOY / name).read_text()
        cluster = yaml.safe_load(text)
        assert cluster["provider"]["type"] == provider
        assert {"cluster_name", "auth", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"} <= set(cluster)
        assert any("scripts/setup.sh" in command for command in cluster["setup_commands"])
        for key in cluster:  # every top-level key is explained by a comment right above it
            above = text.split(f"\n{key}:")[0].rstrip().splitlines()[-1]
            assert above.startswith("#"), f"{name}: {key} has no comment"
