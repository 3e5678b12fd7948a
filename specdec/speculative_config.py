"""vLLM's `--speculative-config` JSON onto specdec's serve config, so that a vLLM command line carries over.

Mapped keys: `method` (`draft_model`, a separate small draft model, which is also what a `model` without
a method means, -> draft.kind model; `eagle` and `eagle3` -> draft.kind head, a specdec feature head made
by `specdec distill --kind head`: EAGLE checkpoints in SafeAILab's format are not read), `model` ->
draft.model, `num_speculative_tokens` -> defaults.gamma, `disable_by_batch_size` ->
defaults.disable_by_batch_size (requests without a gamma go target-only while that many are in flight),
`acceptance_method` (vLLM v0's: `rejection_sampler` -> defaults.rule sd, `typical_acceptance_sampler` ->
typical), `draft_tensor_parallel_size` (1 only: a draft runs on one device), `disable_logprobs` (true
only: specdec returns no log-probabilities).

Every other key is refused, naming it: those in `NOT_SUPPORTED` with the reason, unknown ones with the
list of keys this takes. Pure: a dict in, a ServeConfig out.
"""

from __future__ import annotations

import json
from typing import Any

from specdec.config import ServeConfig

MAPPED = ("method", "model", "num_speculative_tokens", "disable_by_batch_size", "acceptance_method",
          "draft_tensor_parallel_size", "disable_logprobs")
NOT_SUPPORTED = {
    "quantization": "the draft loads with draft.dtype; quantized checkpoints are not supported",
    "max_model_len": "the context is the smaller of the two models' own",
    "revision": "draft.model is a local path or a hub id, loaded at its default revision",
    "code_revision": "draft.model is a local path or a hub id, loaded at its default revision",
    "prompt_lookup_max": "n-gram (prompt lookup) drafting is not supported",
    "prompt_lookup_min": "n-gram (prompt lookup) drafting is not supported",
    "speculative_token_tree": "the draft proposes chains (num_draft_sequences per request gives several)",
    "posterior_threshold": "set rule_params.epsilon per request (rule typical)",
    "posterior_alpha": "set rule_params.delta per request (rule typical)",
    "enforce_eager": "specdec runs the models eagerly",
    "disable_padded_drafter_batch": "batching is per service (draft.max_batch)",
    "draft_pipeline_parallel_size": "a draft runs on one device",
}
METHODS = {"draft_model": "model", "eagle": "head", "eagle3": "head"}  # -> draft.kind
ACCEPTANCE_METHODS = {"rejection_sampler": "sd", "typical_acceptance_sampler": "typical"}


def parse_speculative_config(text: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"speculative_config: not JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise ValueError("speculative_config: expected a JSON object, e.g. '{\"model\": \"demo:draft\", "
                         "\"num_speculative_tokens\": 4}'")
    return values


def apply_speculative_config(config: ServeConfig, values: dict[str, Any]) -> ServeConfig:
    """`config` with vLLM's speculative-config keys applied. Raises ValueError naming the first key it refuses."""
    for key in values:
        if key in NOT_SUPPORTED:
            raise ValueError(f"speculative_config.{key}: not supported: {NOT_SUPPORTED[key]}")
        if key not in MAPPED:
            raise ValueError(f"speculative_config.{key}: unknown key; specdec maps {', '.join(MAPPED)}")
    method = values.get("method", "draft_model")
    if method not in METHODS:
        raise ValueError(f"speculative_config.method: one of {', '.join(METHODS)} (a separate draft model, or a "
                         f"specdec feature head for eagle and eagle3), got {method!r}")
    draft, defaults = {"kind": METHODS[method]}, {}
    if "model" in values:
        draft["model"] = _typed(values, "model", str)
    if "num_speculative_tokens" in values:
        defaults["gamma"] = _typed(values, "num_speculative_tokens", int)
    if values.get("disable_by_batch_size") is not None:
        defaults["disable_by_batch_size"] = _typed(values, "disable_by_batch_size", int)
    if "acceptance_method" in values:
        method = values["acceptance_method"]
        if method not in ACCEPTANCE_METHODS:
            raise ValueError(f"speculative_config.acceptance_method: one of {', '.join(ACCEPTANCE_METHODS)}, "
                             f"got {method!r}")
        defaults["rule"] = ACCEPTANCE_METHODS[method]
    if values.get("draft_tensor_parallel_size", 1) != 1:
        raise ValueError("speculative_config.draft_tensor_parallel_size: only 1 (a draft runs on one device)")
    if values.get("disable_logprobs", True) is not True:
        raise ValueError("speculative_config.disable_logprobs: only true (specdec returns no log-probabilities)")
    try:
        return config.with_overrides(**{name: section for name, section in (("draft", draft), ("defaults", defaults))
                                        if section})
    except ValueError as exc:  # a value the serve config refuses, e.g. a gamma past limits.max_gamma
        raise ValueError(f"speculative_config: {exc}") from exc


def _typed(values: dict[str, Any], key: str, kind: type):
    value = values[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"speculative_config.{key}: expected {kind.__name__}, got {value!r}")
    return value
