"""Settings a session's calls would repeat every round, sent once and held by the service.

A propose or verify call carries its session's settings (the warps and, for the draft, the seed and what
it reports) on its first call, and after that sets `settings_held` and leaves them out: the service fills
them in from the last call of the session that carried them and passed its checks. A service that holds
none for the session (a session it never saw, or one it lost in a restart) refuses the call with NOT_FOUND
naming `settings_held`, which the caller treats as a lost session: it starts the session again, with its
settings.

Knows protobuf messages only; not the models, rounds or gRPC. Runs on the event loop only.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from specdec.errors import SessionError

PROPOSE_SETTINGS = ("sampling", "seed", "want_probs", "confidence_threshold", "want_raw_probs", "num_draft_sequences",
                    "num_alternatives")
VERIFY_SETTINGS = ("sampling",)  # the statistics travel every call: one window or several differ


def without_settings(request: Message, fields: tuple[str, ...]) -> Message:
    """The request with its settings left out and `settings_held` set (what travels after the first call)."""
    for name in fields:
        request.ClearField(name)
    request.settings_held = True
    return request


class HeldSettings:
    def __init__(self, fields: tuple[str, ...]):
        self.fields = fields
        self._held: dict[str, Message] = {}

    def __len__(self) -> int:
        return len(self._held)

    def resolve(self, request: Message) -> Message:
        """The request as if it carried its settings: one that carries them as it is; one with
        `settings_held` with the held ones filled in. Raises SessionError (NOT_FOUND)."""
        if not request.settings_held:
            return request
        held = self._held.get(request.session_id)
        if held is None:
            raise SessionError("settings_held", f"no settings held for session {request.session_id!r} (unknown, "
                                                f"ended, or the service restarted); send them with the call",
                               "NOT_FOUND")
        full = type(request)()
        full.CopyFrom(request)
        for name in self.fields:
            _copy(held, full, name)
        full.settings_held = False
        return full

    def hold(self, request: Message) -> None:
        """Hold the settings a request carries for its session's later calls. Called once the request has
        passed its checks, so that a refused call never replaces the settings its session holds."""
        if request.settings_held:
            return
        held = type(request)()
        for name in self.fields:
            _copy(request, held, name)
        self._held[request.session_id] = held

    def forget(self, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            self._held.pop(session_id, None)


def _copy(source: Message, target: Message, name: str) -> None:
    if source.DESCRIPTOR.fields_by_name[name].message_type is not None:
        getattr(target, name).CopyFrom(getattr(source, name))
    else:
        setattr(target, name, getattr(source, name))
