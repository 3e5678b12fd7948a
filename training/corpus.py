"""Text to distil on: read from a file, a folder or a JSONL file, split into train and held-out by a hash,
and cut into token windows.

`demo` is the demo pair's own corpus: the Python source on this machine, split as demo_pair/train.py
splits it, so that held-out figures are on files neither model trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from specdec.errors import InvalidField

DEMO = "demo"
HELDOUT_PERCENT = 2  # of the texts (by a hash of each), never trained on
TEXT_SUFFIXES = (".py", ".txt", ".md", ".rst")
DEMO_CORPUS_BYTES = 80_000_000


def held_out(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


def read_corpus(source: str, max_bytes: int = DEMO_CORPUS_BYTES) -> tuple[list[str], list[str]]:
    """(train, held-out) texts of `source`: `demo`, a .jsonl or .jsonl.gz file of {"text": ...} rows, a
    folder (its .py, .txt, .md and .rst files), or one text file (cut at blank lines into pieces)."""
    if source == DEMO:
        from specdec.demo_pair.train import collect_files

        train, heldout = collect_files(max_bytes)
        return [text for _, text in train], [text for _, text in heldout]
    path = Path(source)
    if not path.exists():
        raise InvalidField("corpus", f"{source!r} is neither `demo` nor an existing file or folder")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        named = [(str(p.relative_to(path)), p.read_text(encoding="utf-8", errors="replace")) for p in files]
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as rows:
            named = [(f"{index}", _text_of(row, index)) for index, row in enumerate(rows) if row.strip()]
    else:
        pieces = path.read_text(encoding="utf-8", errors="replace").split("\n\n")
        named = [(f"{index}", piece) for index, piece in enumerate(pieces) if piece.strip()]
    if not named:
        raise InvalidField("corpus", f"{source!r} holds no text")
    train = [text for key, text in named if not held_out(key)]
    heldout = [text for key, text in named if held_out(key)]
    if not heldout:  # a small corpus whose hashes held nothing out: its last text (a single text: itself)
        heldout = [train.pop()] if len(train) > 1 else list(train)
    return train, heldout


def _text_of(row: str, index: int) -> str:
    try:
        text = json.loads(row)["text"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidField("corpus", f"line {index + 1}: not a JSON object with a \"text\" string ({exc})") from None
    if not isinstance(text, str):
        raise InvalidField("corpus", f"line {index + 1}: \"text\" is not a string")
    return text


def encode(tokenizer, texts: list[str]) -> np.ndarray:
    """The texts' token ids end to end, each followed by end-of-text."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    ids: list[int] = []
    for start in range(0, len(texts), 256):
        for row in tokenizer(texts[start:start + 256], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
            ids.append(eos)
    return np.asarray(ids, dtype=np.int64)


def windows(tokens: np.ndarray, seq_len: int, batch_size: int, rng: random.Random) -> torch.Tensor:
    """`batch_size` windows of seq_len + 1 tokens from random places: inputs and next-token labels."""
    if len(tokens) < seq_len + 2:
        raise InvalidField("seq_len", f"{seq_len} is longer than the corpus ({len(tokens)} tokens)")
    starts = [rng.randrange(0, len(tokens) - seq_len - 1) for _ in range(batch_size)]
    return torch.from_numpy(np.stack([tokens[start:start + seq_len + 1] for start in starts]))
