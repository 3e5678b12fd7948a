"""Names changed in this release, and their old spellings, still accepted for one release with a FutureWarning.

One name per idea: M, the number of draft sequences per round, is `num_draft_sequences` everywhere (it was
`num_drafts` in requests, which now keeps vLLM's meaning only: rounds that drafted, a statistic).
"""

from __future__ import annotations

import warnings
from typing import Any

from specdec.errors import InvalidField

REQUEST_FIELDS = {"num_drafts": "num_draft_sequences"}  # old request field -> its name now
CONFIG_KEYS = {"limits": {"max_num_drafts": "max_draft_sequences"}}  # serve config section -> old key -> key now


def current_names(fields: dict[str, Any], renamed: dict[str, str], where: str = "") -> dict[str, Any]:
    """`fields` with every old spelling moved to its name now, each with a FutureWarning. Giving both the old
    and the new spelling raises InvalidField naming the new one."""
    out = dict(fields)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise InvalidField(f"{where}{new}", f"given twice: as {new} and as its deprecated spelling {old}")
        warnings.warn(f"{where}{old} is deprecated: it is now {where}{new} (the old spelling goes in the next "
                      "release)", FutureWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out
