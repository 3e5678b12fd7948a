"""Load a Hugging Face causal LM and run it over per-session KV slots with explicit rollback.

Shared by the draft and the target service. Knows nothing about gRPC, acceptance rules or rounds: a
session is the KV slot (`kv_cache.Slot`) that holds exactly its tokens, and its length. `extend(session,
keep_len, tokens)` rolls the session back to `keep_len` tokens (sets its length), appends `tokens` in one
forward pass and returns the logits at the appended positions. `extend_batch` does that for several
sessions in one forward: each row has its own positions and attends over its own slot in place. Llama-family
models run the runtime's lean forward (`lean_forward`, same logits, a fraction of the Python); others run
their transformers module forward with the slots as its cache.

Input is checked once, at the edge: `check_extend` holds a call against the state of its session (held,
room, keep_len, context); token ids and field ranges are checked by the servicers before it. `extend`
checks; `extend_batch` and `extend_rows` take input already checked.

For drafting on the device, `rows` (a row per session) and `fork` (M copies of one session's slot) give
`Rows` that `extend_rows` extends in lockstep with tokens that stay on the device: no host sync inside.
Not thread-safe: each service drives it from one worker thread.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from specdec.config import COMPILE_MODES, FORWARDS
from specdec.errors import InvalidField, SessionError
from specdec.services.runtime.features import captured_layers, feature_dtype
from specdec.services.runtime.kv_cache import ATTENTION, KVShape, Slot, SlotForward, Span, cache_keyword, grown_capacity
from specdec.services.runtime.lean_forward import lean_forward
from specdec.services.runtime.transfer import to_device
from specdec.types import ModelInfo

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
Tokens = list[int] | torch.Tensor  # token ids appended to a session: host ints, or a 1-D long tensor on the device


def packed_layout(pasts: list[int], counts: list[int], logits_of: list[int]) -> tuple[list[int], list[int]]:
    """Items of `counts` new tokens after `pasts` packed into one row: each token's position, and the columns
    whose logits are computed (item i's last `logits_of[i]` tokens)."""
    positions, keep, offset = [], [], 0
    for past, count, wanted in zip(pasts, counts, logits_of, strict=True):
        positions.extend(range(past, past + count))
        keep.extend(range(offset + count - wanted, offset + count))
        offset += count
    return positions, keep


class SessionLM(Protocol):
    """What the draft and target runners need of a model: per-session extend with rollback, and rows that
    extend in lockstep with tokens kept on `device`."""

    vocab_size: int
    max_context: int
    device: torch.device

    @property
    def device_description(self) -> str:
        """The device, or the devices a model spanning several runs on ("cuda:0, cuda:1")."""
        return ", ".join(dict.fromkeys(map(str, self.kv_shape.layer_devices))) or str(self.device)

    def check_extend(self, session_id: str, keep_len: int, tokens: list[int],
                     lane: int | None = None) -> None: ...

    def extend_batch(self, items: list[tuple[str, int, Tokens]],
                     logits_of: list[int] | None = None) -> list[torch.Tensor]: ...

    def extend_batch_features(self, items: list[tuple[str, int, Tokens]], layers: tuple[int, ...],
                              logits_of: list[int] | None = None
                              ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]: ...

    def rows(self, session_ids: list[str]) -> object: ...

    def fork(self, session_id: str, copies: int) -> object: ...

    def fork_at(self, session_id: str, lengths: list[int]) -> object: ...

    def roll_back(self, session_id: str, keep_len: int) -> None: ...

    def check_keep(self, session_id: str, keep_len: int, lane: int | None = None) -> None: ...

    def lane_tokens(self, session_id: str, index: int) -> int: ...

    def adopt(self, session_id: str, index: int) -> None: ...

    def extend_rows(self, rows: object, tokens: torch.Tensor) -> torch.Tensor: ...

    def extend_rows_features(self, rows: object, tokens: torch.Tensor,
                             layers: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def cache_len(self, session_id: str) -> int: ...

    def end_session(self, session_id: str) -> bool: ...


@dataclass(frozen=True)
class LoadSpec:
    """Where to load a model from and how. `model` is a local path or a hub id."""

    model: str
    dtype: str = "float32"
    device: str = "auto"  # "auto": CUDA when this process sees a GPU, else CPU
    forward: str = "auto"  # "auto": the lean forward where the architecture allows it; "transformers": never
    gpus: int = 1  # above 1: the model's layers spread over this many CUDA devices (0 .. gpus - 1)
    compile: str = "off"  # torch.compile of the lean forward's dense math: off | default | reduce-overhead
    kind: str = "model"  # a draft's: "model" (a causal LM) or "head" (a feature head, `services.head`)

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass
class Rows:
    """Rows that `extend_rows` extends in lockstep: the slots (a row each, or M rows for a fork) and each
    row's next position, on the device. Held sessions' slots are shared: extending the rows extends them."""

    slots: list[Slot]
    positions: torch.Tensor  # [rows, 1] long, on the device


@dataclass
class Session:
    slot: Slot | None = None
    last_used: float = field(default_factory=time.monotonic)
    lanes: Rows | None = None  # the forks of the session's last call with lanes, until its next

    @property
    def length(self) -> int:
        return self.slot.length if self.slot else 0


def kept_lane(session: Session | None, index: int) -> Slot:
    """The slot of a session's kept lane `index`; SessionError (NOT_FOUND) naming adopt_lane if none."""
    if session is None or session.lanes is None or not 0 <= index < len(session.lanes.slots):
        raise SessionError("adopt_lane", f"the session keeps no lane {index + 1} (lanes live until the session's "
                                         f"next call with lanes)", "NOT_FOUND")
    return session.lanes.slots[index]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the vocabulary and the special tokens: equal fingerprints mean interchangeable token ids."""
    payload = {"vocab": sorted(tokenizer.get_vocab().items()), "special": tokenizer.all_special_tokens,
               "eos": tokenizer.eos_token_id}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


ARCHITECTURE_KEYS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings")
FINGERPRINT_ROWS = 16  # embedding rows hashed (rounded to float16)


def model_fingerprint(config: object, embed: torch.Tensor) -> str:
    """A model's identity from its config's architecture fields and its embedding's first rows: equal for
    the same weights in any dtype (they are hashed rounded to float16), different for another model of the
    same shape. A feature head records its target's, and is refused by any other target."""
    architecture = {key: getattr(config, key, None) for key in ARCHITECTURE_KEYS}
    sample = embed[:FINGERPRINT_ROWS].detach().to("cpu", torch.float16).numpy().tobytes()
    return hashlib.sha256(json.dumps(architecture, sort_keys=True).encode() + sample).hexdigest()[:16]


def kv_shape(config: object, dtype: torch.dtype, device: torch.device,
             devices: tuple[torch.device, ...] = ()) -> KVShape:
    """The K/V geometry of a decoder config (Llama-style field names); `devices`: each layer's, for a model
    spanning several."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return KVShape(config.num_hidden_layers, kv_heads, head_dim, dtype, device, devices)


def load_model(spec: LoadSpec) -> torch.nn.Module:
    """The model in eval mode: on its device, or with `spec.gpus` > 1 its layers balanced over CUDA devices
    0 .. gpus - 1 (accelerate's device map; the GPUs this process was given are those it sees)."""
    kwargs = {"dtype": DTYPES[spec.dtype], "attn_implementation": ATTENTION}
    device = spec.resolved_device()
    if spec.gpus <= 1 or not device.startswith("cuda"):  # (GPUs held, the model on the CPU as configured)
        return AutoModelForCausalLM.from_pretrained(spec.model, **kwargs).to(device).eval()
    if torch.cuda.device_count() < spec.gpus:
        raise InvalidField("num_gpus", f"spanning {spec.gpus} GPUs needs that many CUDA devices; this process "
                                       f"sees {torch.cuda.device_count() if torch.cuda.is_available() else 0} "
                                       f"(device {device})")
    memory = {index: torch.cuda.get_device_properties(index).total_memory for index in range(spec.gpus)}
    return AutoModelForCausalLM.from_pretrained(spec.model, device_map="auto", max_memory=memory, **kwargs).eval()


def layer_devices(model: torch.nn.Module) -> tuple[torch.device, ...]:
    """Each decoder layer's device where the model spans several; () where it is on one."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not getattr(model, "hf_device_map", None) or layers is None:
        return ()
    devices = tuple(next(layer.parameters()).device for layer in layers)
    return devices if len(set(devices)) > 1 else ()


class SessionStore:
    """The sessions of a model service, whatever its model: the checks a call makes against its session,
    the limit on sessions, their ends and expiry. `held_tokens` says how many of a session's tokens its
    cache holds (a causal LM: its slot's length); a subclass says how many its kept lanes hold
    (`lane_tokens`)."""

    max_context: int

    def __init__(self, max_sessions: int = 0):
        self.sessions: dict[str, Session] = {}
        self.max_sessions = max_sessions  # 0: no limit; beyond it a new session is refused, not an OOM
        self.expired = 0  # sessions ended for idling

    def held_tokens(self, session: Session) -> int:
        return session.length

    def check_extend(self, session_id: str, keep_len: int, tokens: list[int], lane: int | None = None) -> None:
        """Raise SessionError naming the field if `extend(session_id, keep_len, tokens)` cannot run on this
        session's state (after it adopts its lane `lane`, if given). Token ids are the servicers' check
        (`validation.check_token_ids`), made before."""
        self.check_keep(session_id, keep_len, lane)
        if not tokens:
            raise SessionError("new_tokens", "at least one token must be appended")
        if keep_len + len(tokens) > self.max_context:
            raise SessionError("new_tokens", f"session would hold {keep_len + len(tokens)} tokens, "
                                             f"more than the model's context of {self.max_context}")

    def check_keep(self, session_id: str, keep_len: int, lane: int | None = None) -> None:
        """Raise SessionError naming the field if the session cannot be rolled back to keep_len tokens (a new
        session: keep_len 0, and room for it), after it adopts its lane `lane`, if given."""
        session = self.sessions.get(session_id)
        if session is None and keep_len > 0:
            raise SessionError("session_id", f"{session_id!r} is not a session of this service (unknown, ended, "
                                             f"expired, or the service restarted); start it again with keep_len 0",
                               "NOT_FOUND")
        if session is None and self.max_sessions and len(self.sessions) >= self.max_sessions:
            raise SessionError("session_id", f"no room for a new session: the service holds its limit of "
                                             f"{self.max_sessions} (limits.max_sessions)", "RESOURCE_EXHAUSTED")
        cached = self.held_tokens(session) if session else 0
        if lane is not None:
            cached = self.lane_tokens(session_id, lane)
        if keep_len < 0 or keep_len > cached:
            raise SessionError("keep_len", f"{keep_len} is outside the {cached} tokens cached for this session")

    def cache_len(self, session_id: str) -> int:
        session = self.sessions.get(session_id)
        return self.held_tokens(session) if session else 0

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


class CausalLM(SessionStore):
    """A causal LM plus its tokenizer, with a KV slot per session."""

    def __init__(self, spec: LoadSpec, max_sessions: int = 0):
        if spec.dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {sorted(DTYPES)}, got {spec.dtype!r}")
        if spec.forward not in FORWARDS:
            raise ValueError(f"forward: must be one of {FORWARDS}, got {spec.forward!r}")
        super().__init__(max_sessions)
        self.spec = spec
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model)
        self.model = load_model(spec)
        self.device = self.model.get_input_embeddings().weight.device  # where tokens go in; logits come out here
        self._cache_arg = cache_keyword(self.model)
        self.kv_shape = kv_shape(self.model.config, self.model.dtype, self.device, layer_devices(self.model))
        if spec.compile not in COMPILE_MODES:
            raise ValueError(f"compile: must be one of {COMPILE_MODES}, got {spec.compile!r}")
        self._lean, reason = (lean_forward(self.model, spec.compile) if spec.forward == "auto"
                              else (None, "forward: transformers"))
        # which forward runs, and why not the lean one (`specdec status` shows it)
        compiled = f", compiled: {spec.compile}" if spec.compile != "off" else ""
        self.forward_kind = f"lean{compiled}" if self._lean else f"transformers ({reason})"
        # Distributions cover the tokenizer's ids only: some checkpoints pad the output layer.
        self.vocab_size = len(self.tokenizer)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 2**31 - 1)

    def info(self) -> ModelInfo:
        return ModelInfo(
            model=self.spec.model,
            vocab_size=self.vocab_size,
            max_context=self.max_context,
            tokenizer_fingerprint=tokenizer_fingerprint(self.tokenizer),
            model_fingerprint=model_fingerprint(self.model.config, self.model.get_input_embeddings().weight),
            device=self.device_description,
            dtype=self.spec.dtype,
            eos_token_id=-1 if self.tokenizer.eos_token_id is None else int(self.tokenizer.eos_token_id),
        )

    @property
    def device_description(self) -> str:
        """The device, or the devices a model spanning several runs on ("cuda:0, cuda:1")."""
        return ", ".join(dict.fromkeys(map(str, self.kv_shape.layer_devices))) or str(self.device)

    def extend(self, session_id: str, keep_len: int, tokens: list[int]) -> torch.Tensor:
        """Roll the session back to keep_len tokens, append tokens; return float32 logits [len(tokens), vocab]."""
        self.check_extend(session_id, keep_len, tokens)
        return self.extend_batch([(session_id, keep_len, tokens)])[0]

    def extend_batch(self, items: list[tuple[str, int, Tokens]],
                     logits_of: list[int] | None = None) -> list[torch.Tensor]:
        """`extend` for several distinct sessions whose items passed `check_extend`, in one forward; float32
        logits per item, on the device: at all its appended positions [len(tokens), vocab], or at its last
        `logits_of[i]` [logits_of[i], vocab] (0: none, a chunk of a prefill)."""
        return self.extend_batch_features(items, (), logits_of)[0]

    @torch.inference_mode()
    def extend_batch_features(self, items: list[tuple[str, int, Tokens]], layers: tuple[int, ...],
                              logits_of: list[int] | None = None
                              ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """`extend_batch`, and per item the features at its appended positions [len(tokens), len(layers) x
        hidden] (the outputs of those decoder layers, `feature_dtype`, on the device; None without layers).
        The items' tokens are packed into one row: no padding, whatever their lengths."""
        if len({session_id for session_id, _, _ in items}) != len(items):
            raise ValueError("extend_batch needs distinct sessions")
        counts = [len(tokens) for _, _, tokens in items]
        logits_of = counts if logits_of is None else logits_of
        slots = [self._rolled_back(session_id, keep_len, len(tokens)) for session_id, keep_len, tokens in items]
        spans, offset = [], 0
        for slot, count in zip(slots, counts, strict=True):
            spans.append(Span(slot, 0, slot.length, count, offset))
            offset += count
        positions, keep = packed_layout([slot.length for slot in slots], counts, logits_of)
        input_ids = torch.cat([self._to_device(torch.tensor(tokens, dtype=torch.long)) if isinstance(tokens, list)
                               else tokens for _, _, tokens in items])
        logits, features = self._forward(spans, input_ids[None], self._to_device(torch.tensor([positions])), layers,
                                         self._to_device(torch.tensor(keep, dtype=torch.long)))
        return (list(logits[0].split(logits_of)),
                list(features[0].split(counts)) if layers else [None] * len(items))

    def _rolled_back(self, session_id: str, keep_len: int, appending: int) -> Slot:
        """The session's slot at keep_len tokens, with room for `appending` more (a new session gets one)."""
        session = self.sessions.setdefault(session_id, Session())
        session.last_used = time.monotonic()
        if session.slot is None:
            session.slot = Slot(self.kv_shape, 1, grown_capacity(keep_len + appending, 0, self.max_context))
        session.slot.length = keep_len
        return session.slot

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        """A host tensor onto the device without waiting for the device's queued work (pinned on CUDA)."""
        return to_device(host, self.device)

    def _forward(self, spans: list[Span], input_ids: torch.Tensor, positions: torch.Tensor,
                 layers: tuple[int, ...] = (), keep: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward: input_ids and positions [rows, T] on the device -> float32 logits [rows, T, vocab]
        (with `keep`, column indices: [rows, len(keep), vocab], those columns' only) and, with `layers`, the
        features [rows, T, len(layers) x hidden] (`feature_dtype`). Each span's slot grows to hold its new
        tokens, and afterwards holds them."""
        for span in spans:
            span.slot.reserve(span.past + span.count, self.max_context)
        if self._lean is not None:
            logits, features = self._lean.forward(spans, input_ids, positions, layers, keep)
        else:
            cache = SlotForward(spans, input_ids.shape[1])
            with captured_layers(self.model, layers) as captured:
                logits = self.model(input_ids=input_ids, position_ids=positions, use_cache=True, slot_forward=cache,
                                    **{self._cache_arg: cache}).logits
            features = captured[0] if layers else None
            if keep is not None:
                logits = logits[:, keep.to(logits.device)]
        for span in spans:
            span.slot.length = span.past + span.count
        if features is not None:
            features = features.to(self.device, feature_dtype(self.model.dtype))
        return logits[:, :, : self.vocab_size].float().to(self.device), features  # from the last layer's device

    @torch.inference_mode()
    def rows(self, session_ids: list[str]) -> Rows:
        """A row per held session (distinct), at its current length, for `extend_rows`."""
        slots = [self.sessions[session_id].slot for session_id in session_ids]
        return Rows(slots, self._to_device(torch.tensor([[slot.length] for slot in slots])))

    @torch.inference_mode()
    def fork(self, session_id: str, copies: int) -> Rows:
        """`copies` independent continuations of the session's slot (a copy of it); the session is unchanged."""
        session = self.sessions.get(session_id)
        if session is None or not session.length:
            raise SessionError("session_id", "no cached tokens to fork from")
        slot = session.slot.copies(copies, 1, self.max_context)
        return Rows([slot], torch.full((copies, 1), slot.length, dtype=torch.long, device=self.device))

    @torch.inference_mode()
    def fork_at(self, session_id: str, lengths: list[int]) -> Rows:
        """A row per length, each a copy of the session's first `length` tokens (1 .. its length). The session
        keeps the forks as its lanes until its next call with lanes (`adopt`)."""
        session = self.sessions[session_id]
        forks = []
        for length in lengths:
            fork = session.slot.copies(1, 1, self.max_context)
            fork.length = length
            forks.append(fork)
        session.lanes = Rows(forks, self._to_device(torch.tensor([[length] for length in lengths])))
        return session.lanes

    def lane_tokens(self, session_id: str, index: int) -> int:
        """The tokens the session's lane `index` holds; SessionError (NOT_FOUND) naming adopt_lane if none."""
        return kept_lane(self.sessions.get(session_id), index).length

    def adopt(self, session_id: str, index: int) -> None:
        """The session becomes its lane `index`: the lane's premise and the tokens drafted on it."""
        session = self.sessions[session_id]
        session.slot, session.lanes = kept_lane(session, index), None

    def roll_back(self, session_id: str, keep_len: int) -> None:
        """Keep the session's first keep_len tokens (checked by `check_keep`)."""
        self._rolled_back(session_id, keep_len, 0)

    def extend_rows(self, rows: Rows, tokens: torch.Tensor) -> torch.Tensor:
        """Append tokens [rows, T] (long, on the device) to the rows; return float32 logits [rows, T, vocab]
        on the device. The caller keeps every row within the model's context."""
        return self.extend_rows_features(rows, tokens, ())[0]

    @torch.inference_mode()
    def extend_rows_features(self, rows: Rows, tokens: torch.Tensor,
                             layers: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`extend_rows`, and the features at the appended positions (as `extend_batch_features`)."""
        spans, first = [], 0
        for slot in rows.slots:
            spans.append(Span(slot, first, slot.length, tokens.shape[1]))
            first += slot.width
        out = self._forward(spans, tokens, rows.positions + torch.arange(tokens.shape[1], device=self.device), layers)
        rows.positions += tokens.shape[1]
        return out
