"""Batch-job input: JSON objects (one per line of a JSONL file) -> GenerateRequest messages.

A line is {"prompt": "...", ...} with any other GenerateRequest field by its proto name (max_new_tokens,
rule, gamma, seed, ignore_eos, rule_params {...}, gamma_controller, controller_params {...}, num_draft_sequences,
overlap, speculation_lanes); sampling either as top-level temperature / top_k / top_p or as a "sampling"
object. Pure functions besides reading the file; a bad entry raises an error naming the field (and, for
a file, `file:line: field: ...`). Ranges are the server's to check, at submit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from specdec.errors import InvalidField
from specdec.renamed import REQUEST_FIELDS as RENAMED_REQUEST_FIELDS
from specdec.renamed import current_names
from specdec.v1 import specdec_pb2 as pb

SAMPLING_KEYS = ("temperature", "top_k", "top_p")
REQUEST_FIELDS = tuple(f.name for f in pb.GenerateRequest.DESCRIPTOR.fields)
_NESTED_FIELD = re.compile(r"^Failed to parse (\w+) field: ")
_LOCATION = re.compile(r"\s+at \S+$")


class JobFileError(ValueError):
    """A bad line of a job file: the message is `file:line: field: what is wrong`."""


def request_from_dict(entry: Any) -> pb.GenerateRequest:
    """One job item from its JSON object. Raises InvalidField naming the field."""
    if not isinstance(entry, dict):
        raise InvalidField("request", f"expected a JSON object with a prompt, got {type(entry).__name__}")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidField("prompt", "required: a non-empty string")
    fields = {key: value for key, value in current_names(entry, RENAMED_REQUEST_FIELDS).items()
              if key not in SAMPLING_KEYS}
    sampling = fields.pop("sampling", None) or {}
    if not isinstance(sampling, dict):
        raise InvalidField("sampling", f"expected an object of {', '.join(SAMPLING_KEYS)}")
    for key in SAMPLING_KEYS:
        if key in entry:
            if key in sampling:
                raise InvalidField(key, "given twice: at the top level and in sampling")
            sampling = sampling | {key: entry[key]}
    unknown = sorted(set(fields) - set(REQUEST_FIELDS))
    if unknown:
        raise InvalidField(unknown[0], f"unknown field; known: {', '.join((*REQUEST_FIELDS, *SAMPLING_KEYS))}")
    request = pb.GenerateRequest()
    try:
        json_format.ParseDict(fields | ({"sampling": sampling} if sampling else {}), request)
    except json_format.ParseError as exc:
        raise _named(str(exc)) from exc
    return request


def _named(message: str) -> InvalidField:
    """protobuf's "Failed to parse a field: Failed to parse b field: why at X.a.b." -> InvalidField("a.b", why)."""
    path = []
    while match := _NESTED_FIELD.match(message):
        path.append(match.group(1))
        message = message[match.end():]
    message = _LOCATION.sub("", message.strip().rstrip(".")).strip()
    return InvalidField(".".join(path) or "request", message)


def json_lines(lines: list[str], source: str, error: type[ValueError] = ValueError) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line of a JSONL text; `error` naming `source:line` for a line
    that is not JSON."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{source}:{number}: not JSON: {exc.msg} (column {exc.colno})") from exc


def parse_lines(lines: list[str], source: str) -> list[pb.GenerateRequest]:
    """The requests of a JSONL text; blank lines are skipped. Raises JobFileError at the first bad line."""
    requests = []
    for number, entry in json_lines(lines, source, JobFileError):
        try:
            requests.append(request_from_dict(entry))
        except InvalidField as exc:
            raise JobFileError(f"{source}:{number}: {exc}") from exc
    if not requests:
        raise JobFileError(f"{source}: no requests (one JSON object per line, each with a prompt)")
    return requests


def read_requests(path: str | Path) -> list[pb.GenerateRequest]:
    """The requests of a JSONL job file. Raises JobFileError (bad line) or OSError (unreadable file)."""
    return parse_lines(Path(path).read_text(encoding="utf-8").splitlines(), str(path))
