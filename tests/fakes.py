"""Small hand-written models for unit tests of pure logic: a Markov-chain "language model" whose
next-token logits depend only on the last token, with the same session/rollback contract as CausalLM.
"""

from __future__ import annotations

import torch

from specdec.runtime.model import SessionError


class MarkovLM:
    """Next-token logits = table[last token]. Sessions hold token lists; extend checks keep_len like CausalLM."""

    def __init__(self, table: torch.Tensor):
        self.table = table.float()  # [vocab, vocab]
        self.vocab_size = table.shape[0]
        self.sessions: dict[str, list[int]] = {}
        self.forwards = 0
        self.batches: list[int] = []  # sizes of extend_batch calls

    def check_extend(self, session_id: str, keep_len: int, tokens: list[int]) -> None:
        held = self.sessions.get(session_id, [])
        if not 0 <= keep_len <= len(held):
            raise SessionError("keep_len", f"{keep_len} outside the {len(held)} cached tokens")
        if not tokens:
            raise SessionError("new_tokens", "at least one token must be appended")

    def extend(self, session_id: str, keep_len: int, tokens: list[int]) -> torch.Tensor:
        self.check_extend(session_id, keep_len, tokens)
        held = self.sessions.setdefault(session_id, [])
        del held[keep_len:]
        held.extend(tokens)
        self.forwards += 1
        return self.table[torch.tensor(tokens)]

    def extend_batch(self, items: list[tuple[str, int, list[int]]]) -> list[torch.Tensor]:
        self.batches.append(len(items))
        return [self.extend(*item) for item in items]

    def fork(self, session_id: str, copies: int) -> list[list[int]]:
        return [list(self.sessions[session_id]) for _ in range(copies)]

    def extend_fork(self, fork: list[list[int]], tokens: list[list[int]]) -> torch.Tensor:
        for held, row in zip(fork, tokens, strict=True):
            held.extend(row)
        self.forwards += 1
        return self.table[torch.tensor(tokens)]

    def cache_len(self, session_id: str) -> int:
        return len(self.sessions.get(session_id, []))

    def end_session(self, session_id: str) -> bool:
        return self.sessions.pop(session_id, None) is not None


def random_table(vocab: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * scale
