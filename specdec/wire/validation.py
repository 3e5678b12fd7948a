"""Input checks shared by every service: each failure names the offending field.

Raises `InvalidField`; the gRPC adapters turn it into a status code (INVALID_ARGUMENT by default) with
the message "<field>: <what is wrong>". Pure functions, no gRPC.
"""

from __future__ import annotations

import math
from dataclasses import fields

from specdec.errors import InvalidField
from specdec.types import SamplingParams

MAX_TEMPERATURE = 100.0
MAX_SESSION_ID_LEN = 128


def check_sampling(sampling: SamplingParams, vocab_size: int, prefix: str = "sampling.") -> None:
    t, k, p = sampling.temperature, sampling.top_k, sampling.top_p
    if not math.isfinite(t) or t < 0 or t > MAX_TEMPERATURE:
        raise InvalidField(f"{prefix}temperature", f"must be 0 (greedy) or in (0, {MAX_TEMPERATURE}], got {t}")
    if k < 0 or k > vocab_size:
        raise InvalidField(f"{prefix}top_k", f"must be in [0, {vocab_size}] (0 disables), got {k}")
    if not math.isfinite(p) or p <= 0 or p > 1:
        raise InvalidField(f"{prefix}top_p", f"must be in (0, 1], got {p}")


def check_range(field_name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidField(field_name, f"must be in [{low}, {high}], got {value}")


def check_session_id(session_id: str) -> None:
    if not session_id or len(session_id) > MAX_SESSION_ID_LEN:
        raise InvalidField("session_id", f"must be 1 to {MAX_SESSION_ID_LEN} characters, got {len(session_id)}")
    if not all("!" <= c <= "~" for c in session_id):
        raise InvalidField("session_id", "must be printable ASCII without spaces")


def check_fraction(field_name: str, value: float) -> None:
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise InvalidField(field_name, f"must be in [0, 1], got {value}")


def check_finite_fields(prefix: str, params: object) -> None:
    """Every float field of a dataclass that is set must be a finite number, whether or not it is used."""
    for item in fields(params):
        value = getattr(params, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidField(f"{prefix}.{item.name}", f"must be a finite number, got {value}")


def check_token_ids(field_name: str, tokens: list[int], vocab_size: int) -> None:
    if tokens and (min(tokens) < 0 or max(tokens) >= vocab_size):
        raise InvalidField(field_name, f"token ids must be in [0, {vocab_size})")
