"""Incremental detokenization: text deltas from a growing list of token ids, at a cost per round that
does not grow with the output.

Each push decodes only a short tail: the tokens from `prefix_offset` (a few tokens of context before
the first unreleased one, so that a tokenizer that joins tokens with spaces or merges bytes decodes
them as it would in the whole text) to the end, and releases what that adds to the decoded context.
Byte-level BPE can split one UTF-8 character over several tokens; a delta is held back while the
decoded tail ends in an incomplete character (U+FFFD), and released once the character completes.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

CONTEXT_TOKENS = 4  # tokens decoded before the unreleased ones, for context


class IncrementalDetokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self._tokenizer = tokenizer
        self._token_ids: list[int] = []
        self._prefix_offset = 0  # decoding starts here
        self._read_offset = 0  # tokens before this are released as text
        self._text = ""

    def push(self, token_ids: list[int], final: bool = False) -> str:
        """Add tokens; return the text they complete (everything left when final)."""
        self._token_ids += token_ids
        if self._read_offset == len(self._token_ids):
            return ""
        prefix = self._decode(self._prefix_offset, self._read_offset)
        tail = self._decode(self._prefix_offset, len(self._token_ids))
        if not final and tail.endswith("\ufffd"):
            return ""
        delta = tail[len(prefix):] if tail.startswith(prefix) else tail
        self._read_offset = len(self._token_ids)
        self._prefix_offset = max(0, self._read_offset - CONTEXT_TOKENS)
        self._text += delta
        return delta

    def _decode(self, start: int, end: int) -> str:
        return self._tokenizer.decode(self._token_ids[start:end], skip_special_tokens=True) if end > start else ""

    @property
    def text(self) -> str:
        return self._text
