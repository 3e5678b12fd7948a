"""Load a Hugging Face causal LM and run it over per-session KV caches with explicit rollback.

Shared by the draft and the target service. Knows nothing about gRPC, acceptance rules or rounds: a
session is a list of tokens and the KV cache that holds exactly those tokens. `extend(session, keep_len,
tokens)` rolls the cache back to `keep_len` tokens, appends `tokens` in one forward pass and returns the
logits at the appended positions. Not thread-safe: each service drives it from one worker thread.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedTokenizerBase

from specdec.types import ModelInfo

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PAD_SLACK = 8  # appended lengths up to this share a forward whatever their mix (windows of gamma + 1)


def width_groups(widths: list[int], slack: int = PAD_SLACK) -> list[list[int]]:
    """Indices of `widths` grouped into forwards: each row is right-padded to its group's widest, so a
    long prefill does not pad a batch of short windows to its length. Sorted by width, a new group starts
    where the width passes both `slack` and twice the group's narrowest."""
    groups: list[list[int]] = []
    for index in sorted(range(len(widths)), key=widths.__getitem__):
        if groups and widths[index] <= max(slack, 2 * widths[groups[-1][0]]):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


class SessionError(ValueError):
    """A request does not fit the state of its session (keep_len past the cache), the session is not
    held (code NOT_FOUND: the caller must re-prefill), or the service has no room for a new session (code
    RESOURCE_EXHAUSTED)."""

    def __init__(self, field_name: str, message: str, code: str = "FAILED_PRECONDITION"):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.code = code


class SessionLM(Protocol):
    """What the draft and target runners need of a model: per-session extend with rollback."""

    vocab_size: int

    def extend(self, session_id: str, keep_len: int, tokens: list[int]) -> torch.Tensor: ...

    def cache_len(self, session_id: str) -> int: ...

    def end_session(self, session_id: str) -> bool: ...

    def check_extend(self, session_id: str, keep_len: int, tokens: list[int]) -> None: ...

    def extend_batch(self, items: list[tuple[str, int, list[int]]]) -> list[torch.Tensor]: ...

    def fork(self, session_id: str, copies: int) -> object: ...

    def extend_fork(self, fork: object, tokens: list[list[int]]) -> torch.Tensor: ...


@dataclass(frozen=True)
class LoadSpec:
    """Where to load a model from and how. `model` is a local path or a hub id."""

    model: str
    dtype: str = "float32"
    device: str = "auto"  # "auto": CUDA when this process sees a GPU, else CPU

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass
class Fork:
    """A batch of independent continuations of one session's cache (multi-draft windows)."""

    cache: DynamicCache
    length: int
    copies: int


@dataclass
class Session:
    tokens: list[int] = field(default_factory=list)
    cache: DynamicCache | None = None
    last_used: float = field(default_factory=time.monotonic)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the vocabulary and the special tokens: equal fingerprints mean interchangeable token ids."""
    payload = {"vocab": sorted(tokenizer.get_vocab().items()), "special": tokenizer.all_special_tokens,
               "eos": tokenizer.eos_token_id}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


class CausalLM:
    """A causal LM plus its tokenizer, with per-session KV caches."""

    def __init__(self, spec: LoadSpec, max_sessions: int = 0):
        if spec.dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {sorted(DTYPES)}, got {spec.dtype!r}")
        self.spec = spec
        self.device = torch.device(spec.resolved_device())
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model)
        self.model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=DTYPES[spec.dtype]).to(self.device)
        self.model.eval()
        # Distributions cover the tokenizer's ids only: some checkpoints pad the output layer.
        self.vocab_size = len(self.tokenizer)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 2**31 - 1)
        self.sessions: dict[str, Session] = {}
        self.max_sessions = max_sessions  # 0: no limit; beyond it a new session is refused, not an OOM
        self.expired = 0  # sessions ended for idling

    def info(self) -> ModelInfo:
        return ModelInfo(
            model=self.spec.model,
            vocab_size=self.vocab_size,
            max_context=self.max_context,
            tokenizer_fingerprint=tokenizer_fingerprint(self.tokenizer),
            device=str(self.device),
            dtype=self.spec.dtype,
            eos_token_id=-1 if self.tokenizer.eos_token_id is None else int(self.tokenizer.eos_token_id),
        )

    def check_extend(self, session_id: str, keep_len: int, tokens: list[int]) -> None:
        """Raise SessionError naming the field if `extend(session_id, keep_len, tokens)` cannot run."""
        session = self.sessions.get(session_id)
        if session is None and keep_len > 0:
            raise SessionError("session_id", f"{session_id!r} is not a session of this service (unknown, ended, "
                                             f"expired, or the service restarted); start it again with keep_len 0",
                               "NOT_FOUND")
        if session is None and self.max_sessions and len(self.sessions) >= self.max_sessions:
            raise SessionError("session_id", f"no room for a new session: the service holds its limit of "
                                             f"{self.max_sessions} (limits.max_sessions)", "RESOURCE_EXHAUSTED")
        cached = len(session.tokens) if session else 0
        if keep_len < 0 or keep_len > cached:
            raise SessionError("keep_len", f"{keep_len} is outside the {cached} tokens cached for this session")
        if not tokens:
            raise SessionError("new_tokens", "at least one token must be appended")
        if keep_len + len(tokens) > self.max_context:
            raise SessionError("new_tokens", f"session would hold {keep_len + len(tokens)} tokens, "
                                             f"more than the model's context of {self.max_context}")
        if min(tokens) < 0 or max(tokens) >= self.vocab_size:
            raise SessionError("new_tokens", f"token ids must be in [0, {self.vocab_size})")

    def _rolled_back(self, session_id: str, keep_len: int) -> Session:
        session = self.sessions.setdefault(session_id, Session())
        session.last_used = time.monotonic()
        if session.cache is None:
            session.cache = DynamicCache(config=self.model.config)
        if keep_len < len(session.tokens):
            session.cache.crop(keep_len - len(session.tokens))
            del session.tokens[keep_len:]
        return session

    def extend(self, session_id: str, keep_len: int, tokens: list[int]) -> torch.Tensor:
        """Roll the session back to keep_len tokens, append tokens; return float32 logits [len(tokens), vocab]."""
        self.check_extend(session_id, keep_len, tokens)
        return self._extend_checked(session_id, keep_len, tokens)

    @torch.inference_mode()
    def _extend_checked(self, session_id: str, keep_len: int, tokens: list[int]) -> torch.Tensor:
        session = self._rolled_back(session_id, keep_len)
        input_ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        logits = self.model(input_ids=input_ids, past_key_values=session.cache, use_cache=True).logits
        session.tokens.extend(tokens)
        return logits[0, :, : self.vocab_size].float()

    def extend_batch(self, items: list[tuple[str, int, list[int]]]) -> list[torch.Tensor]:
        """`extend` for several distinct sessions, batched; logits [len(tokens), vocab] per item. Items of
        similar appended length share one forward (`width_groups`)."""
        if len({session_id for session_id, _, _ in items}) != len(items):
            raise ValueError("extend_batch needs distinct sessions")
        for item in items:
            self.check_extend(*item)
        results: list[torch.Tensor | None] = [None] * len(items)
        for group in width_groups([len(tokens) for _, _, tokens in items]):
            for index, logits in zip(group, self._forward_group([items[i] for i in group]), strict=True):
                results[index] = logits
        return results

    @torch.inference_mode()
    def _forward_group(self, items: list[tuple[str, int, list[int]]]) -> list[torch.Tensor]:
        """One forward over several checked, distinct sessions.

        The sessions' caches are left-padded to a common length and stacked, the new tokens right-padded;
        an attention mask hides the padding and position ids continue each session's own positions. Each
        session's cache is then cut back out of the batch.
        """
        if len(items) == 1:
            return [self._extend_checked(*items[0])]
        sessions = [self._rolled_back(session_id, keep_len) for session_id, keep_len, _ in items]
        cached = [len(session.tokens) for session in sessions]
        appended = [len(tokens) for _, _, tokens in items]
        past, width = max(cached), max(appended)
        batch = DynamicCache(config=self.model.config)
        for layer in range(self.model.config.num_hidden_layers):
            batch.update(*self._stacked(sessions, layer, past), layer)
        mask = torch.zeros(len(items), past + width, dtype=torch.long, device=self.device)
        input_ids = torch.zeros(len(items), width, dtype=torch.long, device=self.device)
        positions = torch.zeros(len(items), width, dtype=torch.long, device=self.device)
        for row, ((_, _, tokens), length) in enumerate(zip(items, cached, strict=True)):
            mask[row, past - length: past + len(tokens)] = 1
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            positions[row] = torch.arange(length, length + width)
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=batch,
                            use_cache=True).logits
        for row, (session, length, count) in enumerate(zip(sessions, cached, appended, strict=True)):
            span = slice(past - length, past + count)
            session.cache = DynamicCache(config=self.model.config)
            for layer, cache_layer in enumerate(batch.layers):
                # update() concatenates onto an empty layer, which copies: the views need no clone.
                session.cache.update(cache_layer.keys[row:row + 1, :, span], cache_layer.values[row:row + 1, :, span],
                                     layer)
            session.tokens.extend(items[row][2])
        return [logits[row, :count, : self.vocab_size].float() for row, count in enumerate(appended)]

    def _stacked(self, sessions: list[Session], layer: int, past: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer` of every session's cache, left-padded with zeros to `past` positions: [B, H, past, D]."""
        config = self.model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        keys = torch.zeros(len(sessions), config.num_key_value_heads, past, head_dim, dtype=self.model.dtype,
                           device=self.device)
        values = torch.zeros_like(keys)
        for row, session in enumerate(sessions):
            length = len(session.tokens)
            if length:
                keys[row, :, past - length:] = session.cache.layers[layer].keys[0]
                values[row, :, past - length:] = session.cache.layers[layer].values[0]
        return keys, values

    def fork(self, session_id: str, copies: int) -> Fork:
        """`copies` independent continuations of the session's cache, as one batch; the session is unchanged."""
        session = self.sessions.get(session_id)
        if session is None or session.cache is None:
            raise SessionError("session_id", "no cached tokens to fork from")
        cache = copy.deepcopy(session.cache)
        cache.batch_repeat_interleave(copies)
        return Fork(cache=cache, length=len(session.tokens), copies=copies)

    @torch.inference_mode()
    def extend_fork(self, fork: Fork, tokens: list[list[int]]) -> torch.Tensor:
        """Append tokens[m] to copy m (equal lengths); return float32 logits [copies, len(tokens[0]), vocab]."""
        if len(tokens) != fork.copies or len({len(row) for row in tokens}) != 1 or not tokens[0]:
            raise SessionError("draft_tokens", f"need {fork.copies} windows of one non-zero length")
        if fork.length + len(tokens[0]) > self.max_context:
            raise SessionError("draft_tokens", f"windows would reach past the model's context of {self.max_context}")
        input_ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        logits = self.model(input_ids=input_ids, past_key_values=fork.cache, use_cache=True).logits
        fork.length += len(tokens[0])
        return logits[:, :, : self.vocab_size].float()

    def cache_len(self, session_id: str) -> int:
        session = self.sessions.get(session_id)
        return len(session.tokens) if session else 0

    def end_session(self, session_id: str) -> bool:
        return self.sessions.pop(session_id, None) is not None

    def expire_idle(self, max_idle_s: float) -> list[str]:
        """End the sessions unused for more than `max_idle_s` seconds (abandoned by their clients)."""
        cutoff = time.monotonic() - max_idle_s
        idle = [session_id for session_id, session in self.sessions.items() if session.last_used < cutoff]
        for session_id in idle:
            del self.sessions[session_id]
        self.expired += len(idle)
        return idle
