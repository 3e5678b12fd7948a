"""The target's features: its hidden states after chosen decoder layers, concatenated per position.

`captured_layers` collects them from a transformers module forward (forward hooks on the decoder layers);
the runtime's lean forward collects them itself (`LeanLlama`, `capture`). Either way a layer's output is
taken before any final norm: in transformers 5.x `hidden_states[-1]` is after the final norm, which is
not what the LM head's input is made of.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def feature_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype features travel in: bfloat16 from a bfloat16 model, else float16."""
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float16


@contextmanager
def captured_layers(model: torch.nn.Module, layers: tuple[int, ...]) -> Iterator[list[torch.Tensor]]:
    """Within the block, each module forward of `model` appends to the yielded list its features
    [rows, T, len(layers) x hidden] (the outputs of `layers`, in that order, on the first one's device)."""
    decoder_layers = model.model.layers
    outputs: dict[int, torch.Tensor] = {}
    captured: list[torch.Tensor] = []

    def hook(index: int):
        def keep(module, args, output):
            outputs[index] = output[0] if isinstance(output, tuple) else output
            if len(outputs) == len(layers):
                first = outputs[layers[0]].device
                captured.append(torch.cat([outputs[i].to(first) for i in layers], -1))
                outputs.clear()
        return keep

    handles = [decoder_layers[index].register_forward_hook(hook(index)) for index in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
