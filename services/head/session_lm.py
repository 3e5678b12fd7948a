"""A feature head over per-session KV slots: what the draft service runs when its draft is a head.

A head's session holds pairs, not tokens: pair t is (a feature at position t, token t + 1), so a session
that has seen tokens 0..n holds pairs 0..n-1, and its `cache_len` is n + 1 tokens. A call keeps `keep_len`
tokens (pairs 0..keep_len - 2) and appends its new tokens with the target's features of the position before
each (`extend_pairs`); the last pair's output gives the distribution of the next token and the feature the
next pair starts from (its regressed feature). Drafting appends pairs of the head's own regressed features
and the drafted tokens (`rows` / `extend_rows`, in lockstep with the other sessions of the batch). The
session keeps the regressed feature of every pair from its last pair made of the target's features on,
so that speculation lanes (`fork_at`) can start after any drafted token, and a lane can become the session
(`adopt`). The orchestrator keeps drafted pairs only for lanes: a plain call rolls back to the tokens whose
pairs came from the target's features and appends the accepted ones with the target's features. A head
that lost a session (a restart) gets it again from the orchestrator's copy of the features, from position 0.

Implements the runners' `SessionLM` protocol (with `extend_pairs` in place of `extend_batch`); loads with
`checkpoint.load_head`; knows nothing of gRPC or rounds. Not thread-safe: one worker thread drives it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import AutoTokenizer

from specdec.config import resolve_model
from specdec.errors import SessionError
from specdec.services.head.checkpoint import load_head
from specdec.services.runtime.kv_cache import KVShape, Slot, Span, grown_capacity
from specdec.services.runtime.model import (
    DTYPES,
    LoadSpec,
    Rows,
    Session,
    SessionStore,
    packed_layout,
    tokenizer_fingerprint,
)
from specdec.services.runtime.transfer import to_device
from specdec.types import FeatureRows, ModelInfo


@dataclass
class HeadSession(Session):
    # The regressed features of pairs regress_from, regress_from + 1, ... (each [1, 1, h]): of the last pair
    # appended with the target's features, then of each drafted pair after it.
    regress_from: int = 0
    regress: list[torch.Tensor] = field(default_factory=list)
    lanes: HeadLanes | None = None  # the forks of the session's last call with lanes, until its next

    def feature_after(self, pairs: int) -> torch.Tensor | None:
        """The feature a pair appended after the first `pairs` pairs starts from (None: not kept)."""
        index = pairs - 1 - self.regress_from
        return self.regress[index] if 0 <= index < len(self.regress) else None

    def keep_pairs(self, pairs: int) -> None:
        self.slot.length = pairs
        self.regress = self.regress[: max(pairs - self.regress_from, 0)]


@dataclass
class HeadRows(Rows):
    """Rows drafting in lockstep, each with the feature its next pair starts from, and where each row's
    regressed features go (`sinks`, a list a row; None: not kept)."""

    features: torch.Tensor  # [rows, 1, h]
    sinks: list[list[torch.Tensor]] | None = None


@dataclass
class HeadLanes:
    """A call's lanes, kept by their session: the rows, and the pair each row's regressed features start at."""

    rows: HeadRows
    regress_from: list[int]


def pair_tokens(keep_len: int, new_tokens: list[int]) -> list[int]:
    """The tokens of the pairs a call appends: each new token but a sequence's very first."""
    return new_tokens if keep_len else new_tokens[1:]


class HeadLM(SessionStore):
    def __init__(self, spec: LoadSpec, max_sessions: int = 0):
        super().__init__(max_sessions)
        if spec.dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {sorted(DTYPES)}, got {spec.dtype!r}")
        self.spec = spec
        self.head = load_head(spec.model, dtype=DTYPES[spec.dtype], device=spec.resolved_device())
        self.config = self.head.config
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.config.target))
        self.device = self.head.fuse.weight.device
        self.dtype = self.head.fuse.weight.dtype
        config = self.config
        self.kv_shape = KVShape(1, config.num_key_value_heads, config.head_dim, self.dtype, self.device)
        self.forward_kind = f"feature head over target layers {list(config.feature_layers)}"
        self.vocab_size = len(self.tokenizer)
        self.max_context = config.max_position_embeddings
        self.feature_layers = config.feature_layers
        self.feature_width = config.feature_width

    def info(self) -> ModelInfo:
        eos = self.tokenizer.eos_token_id
        return ModelInfo(model=self.spec.model, vocab_size=self.vocab_size, max_context=self.max_context,
                         tokenizer_fingerprint=tokenizer_fingerprint(self.tokenizer), device=self.device_description,
                         dtype=self.spec.dtype, eos_token_id=-1 if eos is None else int(eos), draft_kind="head",
                         feature_layers=self.feature_layers, target_fingerprint=self.config.target_fingerprint)

    @property
    def device_description(self) -> str:
        return str(self.device)

    def held_tokens(self, session: HeadSession) -> int:
        return session.slot.length + 1 if session.slot and session.slot.length else 0

    @torch.inference_mode()
    def extend_pairs(self, items: list[tuple[str, int, list[int], FeatureRows]]) -> list[torch.Tensor]:
        """Append each checked item's pairs (session, keep_len, new tokens, the features before them) to its
        session, all packed into one forward; return each item's float32 logits [1, vocab] at its last pair,
        on the device."""
        pairs = [pair_tokens(keep_len, tokens) for _, keep_len, tokens, _ in items]
        sessions = [self._rolled_back(session_id, keep_len, len(tokens))
                    for (session_id, keep_len, _, _), tokens in zip(items, pairs, strict=True)]
        counts = [len(tokens) for tokens in pairs]
        positions, last = packed_layout([session.slot.length for session in sessions], counts, [1] * len(items))
        spans, offset = [], 0
        for session, count in zip(sessions, counts, strict=True):
            spans.append(Span(session.slot, 0, session.slot.length, count, offset))
            offset += count
        token_ids = torch.tensor([[token for tokens in pairs for token in tokens]])
        features = torch.cat([rows.values for _, _, _, rows in items])[None]
        g = self.head.fused(to_device(features, self.device))
        out = self._forward(spans, g, to_device(token_ids, self.device), to_device(torch.tensor([positions]),
                                                                                   self.device))
        logits = []
        for column, session in zip(last, sessions, strict=True):
            session.regress_from = session.slot.length - 1
            session.regress = [out.regress[:, column: column + 1]]
            logits.append(self._logits(out.predict[0, column: column + 1]))
        return logits

    def _rolled_back(self, session_id: str, keep_len: int, appending: int) -> HeadSession:
        """The session at keep_len tokens (keep_len - 1 pairs), with room for `appending` more pairs."""
        session = self.sessions.setdefault(session_id, HeadSession())
        session.last_used = time.monotonic()
        kept = max(keep_len - 1, 0)
        if session.slot is None:
            session.slot = Slot(self.kv_shape, 1, grown_capacity(kept + appending, 0, self.max_context))
        session.keep_pairs(kept)
        return session

    def roll_back(self, session_id: str, keep_len: int) -> None:
        """Keep the session's first keep_len tokens (checked by `check_keep`)."""
        self._rolled_back(session_id, keep_len, 0)

    def _forward(self, spans: list[Span], g: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor):
        for span in spans:
            span.slot.reserve(span.past + span.count, self.max_context)
        out = self.head.slot_forward(spans, g, tokens, positions)
        for span in spans:
            span.slot.length = span.past + span.count
        return out

    def _logits(self, predict: torch.Tensor) -> torch.Tensor:
        return self.head.logits(predict)[..., : self.vocab_size].float()

    @torch.inference_mode()
    def rows(self, session_ids: list[str]) -> HeadRows:
        """A row per held session, at the end of its pairs, for `extend_rows`; the sessions keep the regressed
        features of the pairs drafted on them."""
        sessions = [self.sessions[session_id] for session_id in session_ids]
        return HeadRows([session.slot for session in sessions],
                        to_device(torch.tensor([[session.slot.length] for session in sessions]), self.device),
                        torch.cat([session.regress[-1] for session in sessions]),
                        [session.regress for session in sessions])

    @torch.inference_mode()
    def fork(self, session_id: str, copies: int) -> HeadRows:
        """`copies` continuations of the session's pairs; the session is unchanged."""
        session = self.sessions[session_id]
        slot = session.slot.copies(copies, 1, self.max_context)
        return HeadRows([slot], torch.full((copies, 1), slot.length, dtype=torch.long, device=self.device),
                        session.regress[-1].expand(copies, 1, -1))

    @torch.inference_mode()
    def fork_at(self, session_id: str, lengths: list[int]) -> HeadRows:
        """A row per length: a copy of the session's first `length` tokens (length - 1 pairs), whose next pair
        starts from the regressed feature kept for that point. The session keeps the forks as its lanes
        until its next call with lanes (`adopt`)."""
        session = self.sessions[session_id]
        starts = [session.feature_after(length - 1) for length in lengths]
        if any(start is None for start in starts):
            raise SessionError("lanes", f"a lane must start at or after the session's last pair made from the "
                                        f"target's features (token {session.regress_from + 2})")
        forks = []
        for length in lengths:
            fork = session.slot.copies(1, 1, self.max_context)
            fork.length = length - 1
            forks.append(fork)
        rows = HeadRows(forks, to_device(torch.tensor([[length - 1] for length in lengths]), self.device),
                        torch.cat(starts), [[start] for start in starts])
        session.lanes = HeadLanes(rows, [length - 2 for length in lengths])
        return rows

    def lane_tokens(self, session_id: str, index: int) -> int:
        """The tokens the session's lane `index` holds; SessionError (NOT_FOUND) naming adopt_lane if none."""
        return _kept_lane(self.sessions.get(session_id), index).length + 1

    def adopt(self, session_id: str, index: int) -> None:
        """The session becomes its lane `index`: that lane's pairs and regressed features."""
        session = self.sessions[session_id]
        lanes = session.lanes
        session.slot = _kept_lane(session, index)
        session.regress_from, session.regress = lanes.regress_from[index], lanes.rows.sinks[index]
        session.lanes = None

    @torch.inference_mode()
    def extend_rows(self, rows: HeadRows, tokens: torch.Tensor) -> torch.Tensor:
        """Append drafted tokens [rows, 1] (on the device), each paired with its row's last regressed
        feature; return float32 logits [rows, 1, vocab] and move each row's feature on."""
        if tokens.shape[1] != 1:
            raise ValueError("a head drafts one pair at a time: each pair starts from the previous one's output")
        spans, first = [], 0
        for slot in rows.slots:
            spans.append(Span(slot, first, slot.length, tokens.shape[1]))
            first += slot.width
        out = self._forward(spans, rows.features, tokens, rows.positions)
        rows.positions += tokens.shape[1]
        rows.features = out.regress[:, -1:]
        if rows.sinks is not None:
            for row, sink in enumerate(rows.sinks):
                sink.append(rows.features[row: row + 1])
        return self._logits(out.predict)


def _kept_lane(session: HeadSession | None, index: int) -> Slot:
    if session is None or session.lanes is None or not 0 <= index < len(session.lanes.rows.slots):
        raise SessionError("adopt_lane", f"the session keeps no lane {index + 1} (lanes live until the session's "
                                         f"next call with lanes)", "NOT_FOUND")
    return session.lanes.rows.slots[index]
