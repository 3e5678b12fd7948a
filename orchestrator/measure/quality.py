"""Quality of generated code against the real continuation, and under the target model.

Pure scoring functions plus a thin scorer that runs the target model in-process. Knows nothing of
the serving system: it sees prompts, outputs and the real code that followed.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def exact_line_match(generated: str, continuation: str) -> bool:
    """The first generated line equals the real next line (whitespace at the ends ignored)."""
    return first_line(generated) == first_line(continuation)


def token_accuracy(generated_ids: list[int], reference_ids: list[int], limit: int = 32) -> float:
    """Fraction of the first `limit` reference tokens that the output reproduces at the same position."""
    reference = reference_ids[:limit]
    if not reference:
        return 0.0
    return sum(1 for g, r in zip(generated_ids, reference, strict=False) if g == r) / len(reference)


class TargetScorer:
    """The target model run in the benchmark's own process: mean log-likelihood of an output."""

    def __init__(self, model_path: str):
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def mean_loglik(self, prompt_ids: list[int], output_ids: list[int]) -> float:
        """Mean log P_target(output token | everything before it), un-warped, in nats per token."""
        if not output_ids:
            return 0.0
        ids = torch.tensor([prompt_ids + output_ids])
        logprobs = torch.log_softmax(self.model(ids).logits[0, :-1].float(), -1)
        picked = logprobs[len(prompt_ids) - 1:].gather(-1, torch.tensor(output_ids)[:, None])
        return float(picked.mean())
