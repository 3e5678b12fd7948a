"""Test helpers: real servers on a background event loop, and the target's own decoding as oracle."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from specdec.config import resolve_model


class BackgroundLoop:
    """An asyncio loop on a daemon thread, for hosting grpc.aio servers that sync test code calls."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class TargetOracle:
    """The target model run the plain way: Hugging Face generate() and a naive argmax loop without cache."""

    def __init__(self, model: str = "demo:target"):
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        # Like a request with ignore_eos: the end-of-text token is an ordinary token, never a stop.
        self.model.config.eos_token_id = self.model.generation_config.eos_token_id = None

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def hf_generate(self, prompt: str, max_new_tokens: int) -> list[int]:
        ids = torch.tensor([self.encode(prompt)])
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        return out[0, ids.shape[1]:].tolist()
