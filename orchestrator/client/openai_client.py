"""A small client of specdec's OpenAI-compatible HTTP API, for its own load tests: `stream` posts a
streamed /v1/completions request (with vLLM's `return_token_ids` and the usage chunk) and yields what the
gRPC `Client.stream` yields (text deltas with their token ids, then one delta with the request's stats), so
that `specdec loadtest --endpoint openai` measures the HTTP path and writes the same report.

Standard library only (urllib): users call the API with the `openai` package, curl or any HTTP client;
this one exists so that the load test needs nothing more than specdec itself.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator

from specdec.orchestrator.client.grpc_client import Delta


class HttpError(Exception):
    """A refused or failed request: `status` like `HTTP_429`, and the server's error message."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """The data of each server-sent event (its `data:` lines joined by newlines), from the stream's lines."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


class OpenAIClient:
    def __init__(self, base_url: str, timeout_s: float | None = None, tls_ca: str | None = None,
                 token: str | None = None):
        """`base_url`: the server, as `http[s]://host:port` (a bare host:port means http); `tls_ca`: the PEM CA
        of its certificate; `token`: the API key."""
        self.base_url = (base_url if "://" in base_url else f"http://{base_url}").rstrip("/").removesuffix("/v1")
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
        self._headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})

    def stream(self, prompt: str, *, max_new_tokens: int = 0, seed: int | None = None, **fields) -> Iterator[Delta]:
        """Yield text deltas as the server streams them, then one empty delta with the request's stats
        (`spec_decode_stats` and `usage`). `fields`: any other request fields (temperature, gamma, ...).
        Raises HttpError for a refusal (its status) or an error event in the stream."""
        body = {"prompt": prompt, "stream": True, "stream_options": {"include_usage": True},
                "return_token_ids": True, **fields}
        if max_new_tokens:
            body["max_tokens"] = max_new_tokens
        if seed is not None:
            body["seed"] = seed
        request = urllib.request.Request(f"{self.base_url}/v1/completions", json.dumps(body).encode(), self._headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context)
        except urllib.error.HTTPError as exc:
            raise HttpError(f"HTTP_{exc.code}", _message(exc.read())) from exc
        except urllib.error.URLError as exc:
            raise HttpError("UNAVAILABLE", str(exc.reason)) from exc
        with response:
            for data in sse_data(response):
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise HttpError("STREAM_ERROR", chunk["error"]["message"])
                for choice in chunk["choices"]:
                    yield Delta(choice["text"], choice.get("token_ids", []))
                if chunk.get("usage"):
                    yield Delta("", [], chunk["spec_decode_stats"] | chunk["usage"])


def _message(body: bytes) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:200]
