"""The errors every layer raises and every adapter maps, in one module that imports nothing heavy (no torch,
grpc or transformers), so a client, a servicer or a pure rule can name them without loading a model stack.

Each carries the gRPC status code name its adapter answers with, and a message that starts with the field at
fault ("<field>: <what is wrong>").
"""

from __future__ import annotations


class InvalidField(ValueError):
    """A request field that is out of range or malformed (INVALID_ARGUMENT unless `code` says otherwise)."""

    def __init__(self, field_name: str, message: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.code = code


class SessionError(ValueError):
    """A request does not fit the state of its session (keep_len past the cache), the session is not
    held (code NOT_FOUND: the caller must re-prefill), or the service has no room for a new session (code
    RESOURCE_EXHAUSTED)."""

    def __init__(self, field_name: str, message: str, code: str = "FAILED_PRECONDITION"):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.code = code


class ServiceDown(Exception):
    """A model service did not answer (unreachable, crashed, or past its deadline). The service adapter
    is already bringing it back; the round loop decides what to do meanwhile."""


class SessionLost(Exception):
    """A model service no longer holds a session (it restarted, or the session expired): the caller
    starts the session again from the committed tokens."""
