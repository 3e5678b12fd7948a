"""Incremental detokenization: text deltas from a growing list of token ids.

Byte-level BPE can split one UTF-8 character over several tokens; a delta is held back while the
decoded text ends in an incomplete character (U+FFFD), and released once the character completes.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


class IncrementalDetokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self._tokenizer = tokenizer
        self._token_ids: list[int] = []
        self._emitted = ""

    def push(self, token_ids: list[int], final: bool = False) -> str:
        """Add tokens; return the text they complete (everything left when final)."""
        self._token_ids += token_ids
        text = self._tokenizer.decode(self._token_ids, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return ""
        delta = text[len(self._emitted):] if text.startswith(self._emitted) else text
        self._emitted = text
        return delta

    @property
    def text(self) -> str:
        return self._emitted
