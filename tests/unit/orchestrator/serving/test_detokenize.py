"""Incremental detokenization against decoding the whole output at once, over the demo tokenizer."""

from __future__ import annotations

import random

from transformers import AutoTokenizer

from specdec.config import resolve_model
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.serving.detokenize import IncrementalDetokenizer


def test_deltas_join_to_the_whole_decoded_text_whatever_the_chunks():
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("demo:target"))
    rng = random.Random(0)
    texts = [p.prompt + p.continuation for p in code_prompts(6, seed=3)] + ["naïve café → ünïcödé ✓ 日本語\n"]
    for text in texts:
        token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for _ in range(5):
            detokenizer = IncrementalDetokenizer(tokenizer)
            deltas, at = [], 0
            while at < len(token_ids):
                size = rng.randint(1, 5)
                deltas.append(detokenizer.push(token_ids[at:at + size]))
                at += size
            deltas.append(detokenizer.push([], final=True))
            assert "".join(deltas) == tokenizer.decode(token_ids, skip_special_tokens=True)
            assert detokenizer.text == "".join(deltas)
            assert all("\ufffd" not in d for d in deltas[:-1])


def test_random_byte_tokens_hold_back_incomplete_characters():
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("demo:target"))
    rng = random.Random(1)
    token_ids = [rng.randrange(len(tokenizer)) for _ in range(300)]
    detokenizer = IncrementalDetokenizer(tokenizer)
    out = "".join(detokenizer.push(token_ids[i:i + 3]) for i in range(0, len(token_ids), 3))
    out += detokenizer.push([], final=True)
    assert out == tokenizer.decode(token_ids, skip_special_tokens=True)
