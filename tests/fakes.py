"""Small hand-written models for unit tests of pure logic: a Markov-chain "language model" whose
next-token logits depend only on the last token, with the same session/rollback contract as CausalLM
(`SessionLM`), on the CPU; and the scores a rule would see, built from whole distributions.
"""

from __future__ import annotations

import torch

from specdec.distributions.scoring import inverse_cdf, window_statistics
from specdec.errors import SessionError
from specdec.orchestrator.rules.base import RoundScores


class MarkovLM:
    """Next-token logits = table[last token]. Sessions hold token lists; check_extend checks keep_len like
    CausalLM, and counts how often it ran (the runners check each call once)."""

    device = torch.device("cpu")

    def __init__(self, table: torch.Tensor, max_context: int = 1 << 20):
        self.table = table.float()  # [vocab, vocab]
        self.vocab_size = table.shape[0]
        self.max_context = max_context
        self.sessions: dict[str, list[int]] = {}
        self.lanes: dict[str, list[list[int]]] = {}  # session -> the forks of its last call with lanes
        self.forwards = 0
        self.checks = 0
        self.batches: list[int] = []  # sizes of extend_batch calls

    def check_extend(self, session_id: str, keep_len: int, tokens: list[int], lane: int | None = None) -> None:
        self.checks += 1
        held = self.sessions.get(session_id, []) if lane is None else self.lanes[session_id][lane]
        if not 0 <= keep_len <= len(held):
            raise SessionError("keep_len", f"{keep_len} outside the {len(held)} cached tokens")
        if not tokens:
            raise SessionError("new_tokens", "at least one token must be appended")

    def check_keep(self, session_id: str, keep_len: int, lane: int | None = None) -> None:
        self.checks += 1
        held = self.sessions.get(session_id, []) if lane is None else self.lanes[session_id][lane]
        if not 0 <= keep_len <= len(held):
            raise SessionError("keep_len", f"{keep_len} outside the {len(held)} cached tokens")

    def roll_back(self, session_id: str, keep_len: int) -> None:
        del self.sessions[session_id][keep_len:]

    def extend(self, session_id: str, keep_len: int, tokens: list[int]) -> torch.Tensor:
        self.check_extend(session_id, keep_len, tokens)
        return self.extend_batch([(session_id, keep_len, tokens)])[0]

    def extend_batch(self, items: list[tuple[str, int, list[int] | torch.Tensor]],
                     logits_of: list[int] | None = None) -> list[torch.Tensor]:
        self.batches.append(len(items))
        results = []
        for index, (session_id, keep_len, tokens) in enumerate(items):
            tokens = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
            held = self.sessions.setdefault(session_id, [])
            del held[keep_len:]
            held.extend(tokens)
            self.forwards += 1
            rows = self.table[torch.tensor(tokens)]
            results.append(rows[len(tokens) - logits_of[index]:] if logits_of is not None else rows)
        return results

    def extend_batch_features(self, items: list[tuple[str, int, list[int] | torch.Tensor]], layers: tuple[int, ...],
                              logits_of: list[int] | None = None) -> tuple[list[torch.Tensor], list[None]]:
        if layers:
            raise ValueError("a Markov chain has no layers to take features from")
        return self.extend_batch(items, logits_of), [None] * len(items)

    def extend_rows_features(self, rows: list[list[int]], tokens: torch.Tensor,
                             layers: tuple[int, ...]) -> tuple[torch.Tensor, None]:
        if layers:
            raise ValueError("a Markov chain has no layers to take features from")
        return self.extend_rows(rows, tokens), None

    def rows(self, session_ids: list[str]) -> list[list[int]]:
        return [self.sessions[session_id] for session_id in session_ids]

    def fork(self, session_id: str, copies: int) -> list[list[int]]:
        return [list(self.sessions[session_id]) for _ in range(copies)]

    def fork_at(self, session_id: str, lengths: list[int]) -> list[list[int]]:
        self.lanes[session_id] = [self.sessions[session_id][:length] for length in lengths]
        return self.lanes[session_id]

    def adopt(self, session_id: str, index: int) -> None:
        self.sessions[session_id] = self.lanes.pop(session_id)[index]

    def extend_rows(self, rows: list[list[int]], tokens: torch.Tensor) -> torch.Tensor:
        for held, row in zip(rows, tokens.tolist(), strict=True):
            held.extend(row)
        self.forwards += 1
        return self.table[tokens]

    def cache_len(self, session_id: str) -> int:
        return len(self.sessions.get(session_id, []))

    def end_session(self, session_id: str) -> bool:
        self.lanes.pop(session_id, None)
        return self.sessions.pop(session_id, None) is not None


def random_table(vocab: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def scores_from_rows(rule, draft_tokens: list[int], draft_probs: torch.Tensor, target_probs: torch.Tensor,
                     generator: torch.Generator) -> RoundScores:
    """A one-window RoundScores from whole rows, as the services would hand it to `rule`: the draft's
    probability of each of its tokens, and the statistics the rule asks of the target computed from the rows
    (`window_statistics`), its candidates drawn at uniforms from `generator`."""
    tokens = torch.tensor(draft_tokens, dtype=torch.long)
    uniforms = torch.rand(len(draft_tokens) + 1, generator=generator, dtype=torch.float64)
    computed = window_statistics(rule.statistics, target_probs, tokens, uniforms, draft_probs, target_probs,
                                 draft_probs)
    spec = rule.statistics
    draft_token_probs = draft_probs[torch.arange(len(tokens)), tokens]
    return RoundScores(tokens, target_probs.argmax(-1), draft_token_probs=draft_token_probs,
                       target_token_probs=computed.target_token_probs,
                       candidates=computed.candidates if spec.recover else None,
                       entropies=computed.entropies if spec.entropy else None,
                       divergences=computed.divergences if spec.divergence else None)


def one_position_scores(rule, tokens: list[int], draft_row: torch.Tensor, target_rows: torch.Tensor,
                        generator: torch.Generator) -> list[RoundScores]:
    """Many independent one-token rounds drafted from `draft_row` [vocab] against target_rows [2, vocab]
    (the position judged, then the bonus position), as `scores_from_rows` would build them one by one, from
    two `window_statistics` calls: one over a window of every trial's token, one for the bonus tokens."""
    count = len(tokens)
    drafted = torch.tensor(tokens, dtype=torch.long)
    uniforms = torch.rand(count + 1, generator=generator, dtype=torch.float64)
    judged = target_rows[:1].expand(count + 1, -1)  # every position of the window is the judged one
    computed = window_statistics(rule.statistics, judged, drafted, uniforms, draft_row.expand(count, -1), judged,
                                 draft_row.expand(count, -1))
    bonus_uniforms = torch.rand(count, generator=generator, dtype=torch.float64)
    bonus = inverse_cdf(target_rows[1:].expand(count, -1), bonus_uniforms) if rule.statistics.recover else None
    spec, argmax = rule.statistics, target_rows.argmax(-1)
    return [RoundScores(drafted[n:n + 1], argmax, draft_token_probs=draft_row[drafted[n:n + 1]],
                        target_token_probs=computed.target_token_probs[n:n + 1],
                        candidates=torch.stack([computed.candidates[n], bonus[n]]) if spec.recover else None,
                        entropies=computed.entropies[n:n + 1] if spec.entropy else None,
                        divergences=computed.divergences[n:n + 1] if spec.divergence else None)
            for n in range(count)]
