"""Prompts cut from the held-out code of the demo pair (files the models never trained on)."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

HELDOUT_FILE = Path(__file__).resolve().parent / "heldout.jsonl.gz"


@dataclass(frozen=True)
class CodePrompt:
    path: str
    prompt: str  # the code up to a line boundary
    continuation: str  # the real code that follows


def load_files(path: Path = HELDOUT_FILE) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [(row["path"], row["text"]) for row in map(json.loads, fh)]


def code_prompts(count: int, seed: int = 0, prompt_lines: int = 12, continuation_lines: int = 8,
                 path: Path = HELDOUT_FILE) -> list[CodePrompt]:
    """`count` prompts of `prompt_lines` lines each from distinct places of the held-out files, seeded."""
    rng = random.Random(seed)
    files = [(name, text.splitlines(keepends=True)) for name, text in load_files(path)]
    files = [(name, lines) for name, lines in files if len(lines) > prompt_lines + continuation_lines]
    prompts: list[CodePrompt] = []
    while len(prompts) < count:
        name, lines = rng.choice(files)
        start = rng.randrange(0, len(lines) - prompt_lines - continuation_lines)
        prompt = "".join(lines[start:start + prompt_lines])
        if len(prompt.strip()) < 40 or len(prompt) > 1200:
            continue
        continuation = "".join(lines[start + prompt_lines:start + prompt_lines + continuation_lines])
        prompts.append(CodePrompt(name, prompt, continuation))
    return prompts
