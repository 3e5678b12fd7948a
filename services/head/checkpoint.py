"""A feature head on disk, and the target parts it borrows.

A head's checkpoint folder holds `head_config.json` (its shape, the target it was trained for and that
target's fingerprint) and `head.safetensors` (its own weights, float16). The target's token embedding,
final norm and LM head are read from the target's checkpoint when the head loads, only those tensors
(safetensors, a single file or sharded), and the target they came from must have the fingerprint the head
was trained against: a head is refused for any other target, naming both.

The fingerprint is `runtime.model.model_fingerprint`, which the target service reports too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig
from transformers.utils import cached_file

from specdec.config import resolve_model
from specdec.errors import InvalidField
from specdec.services.head.model import FeatureHead, HeadConfig
from specdec.services.runtime.model import model_fingerprint

HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "head.safetensors"


def is_head(path: str) -> bool:
    """Whether `path` is a local head checkpoint folder."""
    return (Path(path) / HEAD_CONFIG).is_file()


def read_head_config(path: str) -> HeadConfig:
    config_file = Path(path) / HEAD_CONFIG
    if not config_file.is_file():
        raise InvalidField("draft.model", f"{path} is not a feature head: it has no {HEAD_CONFIG}")
    return HeadConfig.from_dict(json.loads(config_file.read_text()))


def save_head(head: FeatureHead, out: Path) -> None:
    """The head's config and its own weights (float16), not the target's parts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / HEAD_CONFIG).write_text(json.dumps(head.config.to_dict(), indent=2) + "\n")
    weights = {name: t.detach().to("cpu", torch.float16).contiguous() for name, t in head.state_dict().items()}
    save_file(weights, str(out / HEAD_WEIGHTS))


def _tensor_files(target: str) -> dict[str, str]:
    """Tensor name -> the safetensors file of `target` (a folder or a hub id in the local cache) holding it."""
    index = cached_file(target, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        return {name: cached_file(target, file) for name, file in weight_map.items()}
    single = cached_file(target, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    if not single:
        raise InvalidField("draft.model", f"the head's target {target!r} has no safetensors weights to read its "
                                          f"embedding and LM head from")
    with safe_open(single, "pt") as weights:
        return {name: single for name in weights.keys()}


def target_parts(target: str) -> tuple[object, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The target's config, token embedding, final norm weight and LM head (its embedding when tied)."""
    config = AutoConfig.from_pretrained(target)
    files = _tensor_files(target)

    def tensor(name: str) -> torch.Tensor:
        with safe_open(files[name], "pt") as weights:
            return weights.get_tensor(name)

    embed = tensor("model.embed_tokens.weight")
    head = tensor("lm_head.weight") if "lm_head.weight" in files else embed
    return config, embed, tensor("model.norm.weight"), head


def load_head(path: str, target: str = "", dtype: torch.dtype = torch.float32,
              device: str | torch.device = "cpu") -> FeatureHead:
    """The head at `path` with its target's parts attached, from `target` (default: the target the head
    names). Refused, naming both, when that target's fingerprint is not the one the head was trained for."""
    config = read_head_config(path)
    source = target or config.target
    target_config, embed, norm, lm_head = target_parts(resolve_model(source))
    found = model_fingerprint(target_config, embed)
    if found != config.target_fingerprint:
        raise InvalidField("draft.model", f"the head {path} belongs to the target {config.target!r} (fingerprint "
                                          f"{config.target_fingerprint}), not to {source!r} (fingerprint {found})")
    head = FeatureHead(config)
    with safe_open(str(Path(path) / HEAD_WEIGHTS), "pt") as weights:
        head.load_state_dict({name: weights.get_tensor(name) for name in weights.keys()})
    head.attach_target(embed, norm, lm_head)
    return head.to(device=device, dtype=dtype).eval()
