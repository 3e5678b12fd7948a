"""The errors every layer raises and every adapter maps, in one module that imports nothing heavy (no torch,
grpc or transformers), so a client, a servicer or a pure rule can name them without loading a model stack.

Each carries the field at fault and what is wrong with it as data (`field`, `reason`), the gRPC status code
name its adapter answers with, and reads as "<field>: <reason>".
"""

from __future__ import annotations


class InvalidField(ValueError):
    """A request field that is out of range or malformed (INVALID_ARGUMENT unless `code` says otherwise)."""

    def __init__(self, field_name: str, reason: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(f"{field_name}: {reason}")
        self.field, self.reason, self.code = field_name, reason, code

    def __reduce__(self):  # pickled with its fields (a refusal raised in a Ray actor reaches the driver whole)
        return type(self), (self.field, self.reason, self.code)

    def within(self, parent: str) -> InvalidField:
        """The same error with its field named inside `parent`: `seed` within `requests[3]` is `requests[3].seed`."""
        return InvalidField(f"{parent}.{self.field}", self.reason, self.code)


class SessionError(ValueError):
    """A request does not fit the state of its session (keep_len past the cache), the session is not
    held (code NOT_FOUND: the caller must re-prefill), or the service has no room for a new session (code
    RESOURCE_EXHAUSTED)."""

    def __init__(self, field_name: str, reason: str, code: str = "FAILED_PRECONDITION"):
        super().__init__(f"{field_name}: {reason}")
        self.field, self.reason, self.code = field_name, reason, code

    def __reduce__(self):
        return type(self), (self.field, self.reason, self.code)


class ModelServiceError(Exception):
    """A model service could not serve a call. The service adapter raises only these and SessionLost (never a
    raw gRPC error), and every front door answers them as UNAVAILABLE with `summary`."""

    @property
    def summary(self) -> str:
        raise NotImplementedError


class ServiceFailed(ModelServiceError):
    """A model service answered a call with an error that is neither a lost session nor a sign that it is
    down (say INTERNAL or RESOURCE_EXHAUSTED): the request fails. `code`: the gRPC status code name."""

    def __init__(self, address: str, code: str, details: str):
        super().__init__(f"{address}: {code}: {details}")
        self.address, self.code, self.details = address, code, details

    def __reduce__(self):
        return type(self), (self.address, self.code, self.details)

    @property
    def summary(self) -> str:
        return f"a model service failed: {self.code}: {self.details}"


class ServiceDown(ModelServiceError):
    """A model service did not answer (unreachable, crashed, or past its deadline). The service adapter
    is already bringing it back; the round loop decides what to do meanwhile."""

    @property
    def summary(self) -> str:
        return f"a model service is down: {self}"


class SessionLost(Exception):
    """A model service no longer holds a session (it restarted, or the session expired): the caller
    starts the session again from the committed tokens."""
