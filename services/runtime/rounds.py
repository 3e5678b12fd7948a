"""Idempotent rounds: a model service answers each (session, round) once, so retries are safe.

A retried propose or verify (same session, same round, byte-identical request) gets the first call's
answer again without touching the model, awaiting it if the first call still runs. A session's rounds
must increase, not necessarily by one: a different request for a round already asked, or a round older
than the session's last, is refused with FAILED_PRECONDITION naming `round`. A call that fails leaves
the ledger as it was, so the same round can be retried. One entry per session (its last round); the
service forgets it when the session ends or expires.

Knows nothing of gRPC or models: it keys on a deterministic serialization of the request message.
Runs on the event loop only (not thread-safe).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from specdec.errors import SessionError

Answer = TypeVar("Answer")


def request_digest(request: Message) -> bytes:
    """Equal for byte-identical requests (deterministic serialization: map order cannot differ)."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()


@dataclass
class _Entry(Generic[Answer]):
    round: int
    digest: bytes
    answer: asyncio.Future[Answer]
    previous: _Entry | None  # the entry to restore if this round fails; dropped once it succeeds


class RoundLedger(Generic[Answer]):
    def __init__(self):
        self._last: dict[str, _Entry[Answer]] = {}
        self.replays = 0  # retries answered from the ledger

    def __len__(self) -> int:
        return len(self._last)

    async def answer(self, session_id: str, round_index: int, request: Message,
                     compute: Callable[[], Awaitable[Answer]]) -> Answer:
        """The answer to `request`, round `round_index` of `session_id`: computed once by `compute()`.

        The computation runs as its own task: a caller that gives up (deadline, cancel) does not stop
        it, and a retry picks up its result."""
        digest = request_digest(request)
        last = self._last.get(session_id)
        if last is not None and round_index <= last.round:
            if round_index < last.round:
                raise SessionError("round", f"{round_index} is older than round {last.round} already answered for "
                                            f"this session; rounds must increase")
            if digest != last.digest:
                raise SessionError("round", f"{round_index} was already asked for this session with a different "
                                            f"request; a retry must repeat it exactly, a new round needs a higher "
                                            f"number")
            self.replays += 1
            return await asyncio.shield(last.answer)
        entry = _Entry(round_index, digest, asyncio.ensure_future(compute()), last)
        self._last[session_id] = entry
        entry.answer.add_done_callback(lambda _: self._settle(session_id, entry))
        return await asyncio.shield(entry.answer)

    def _settle(self, session_id: str, entry: _Entry[Answer]) -> None:
        if not _failed(entry.answer):
            entry.previous = None
        elif self._last.get(session_id) is entry:
            restored = entry.previous
            while restored is not None and _failed(restored.answer):
                restored = restored.previous
            if restored is None:
                del self._last[session_id]
            else:
                self._last[session_id] = restored

    async def settled(self, session_id: str) -> None:
        """Return once the session's last round has finished, however it ended (its caller may have left)."""
        last = self._last.get(session_id)
        if last is not None:
            await asyncio.wait([last.answer])

    def forget(self, session_ids: Iterable[str]) -> None:
        """Drop the entries of ended or expired sessions: their next round starts afresh."""
        for session_id in session_ids:
            self._last.pop(session_id, None)


def _failed(answer: asyncio.Future) -> bool:
    return answer.done() and (answer.cancelled() or answer.exception() is not None)
