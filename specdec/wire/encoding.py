"""Compact wire encoding of probability distributions and features (docs/design.md, Wire contract).

Distributions travel as fp16 bytes: dense rows, or only the non-zero entries (int32 index + fp16 value)
when a truncating warp makes rows sparse. Never as repeated fp32 over the vocabulary. The draft's
truncated distributions (`TopRows`, K entries a row) travel as int32 indices and fp32 values, exactly, so
that the orchestrator can forward them to the target and both read the very distribution a draft token was
sampled from; their size does not grow with the vocabulary.

Exactness: fp16 rounding changes a distribution slightly, so the sender samples from
`wire_precision(probs)`, which is bit for bit what the receiver's `decode` returns. The acceptance rule
therefore sees exactly the distribution a draft token was sampled from.

A feature head's input (`FeatureRows`, the target's hidden states) travels as its raw float16 or bfloat16
bytes, in the dtype the target computed it in (float16 from a float32 model).
"""

from __future__ import annotations

import torch

from specdec.types import FeatureRows, TopRows
from specdec.v1 import specdec_pb2 as pb

SPARSE_ENTRY_BYTES = 6  # int32 index + fp16 value
DENSE_ENTRY_BYTES = 2


def wire_precision(probs: torch.Tensor) -> torch.Tensor:
    """probs [rows, vocab] -> the float32 rows the receiver will decode (fp16-rounded, renormalized)."""
    rounded = probs.to(torch.float16).float()
    return rounded / rounded.sum(-1, keepdim=True)


def encode(probs: torch.Tensor) -> pb.Distributions:
    """probs [rows, vocab] float -> Distributions, choosing the smaller of the dense and sparse forms."""
    if probs.dim() != 2:
        raise ValueError(f"probs must be [rows, vocab], got shape {tuple(probs.shape)}")
    half = probs.detach().to("cpu", torch.float16).contiguous()
    rows, vocab = half.shape
    nonzero = half != 0
    nnz = int(nonzero.sum())
    if nnz * SPARSE_ENTRY_BYTES < rows * vocab * DENSE_ENTRY_BYTES:
        row_idx, col_idx = nonzero.nonzero(as_tuple=True)
        return pb.Distributions(
            encoding=pb.Distributions.SPARSE_FP16,
            rows=rows,
            vocab_size=vocab,
            values=half[row_idx, col_idx].numpy().tobytes(),
            indices=col_idx.to(torch.int32).numpy().tobytes(),
            row_lengths=nonzero.sum(-1).tolist(),
        )
    return pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=rows, vocab_size=vocab,
                            values=half.numpy().tobytes())


def decode(message: pb.Distributions) -> torch.Tensor:
    """Distributions -> float32 [rows, vocab], rows renormalized. Raises ValueError on a malformed message."""
    rows, vocab = message.rows, message.vocab_size
    if rows < 0 or vocab <= 0:
        raise ValueError(f"distributions: bad shape rows={rows} vocab_size={vocab}")
    values = _frombuffer(message.values, torch.float16, "values")
    if message.encoding == pb.Distributions.DENSE_FP16:
        if values.numel() != rows * vocab:
            raise ValueError(f"distributions: {values.numel()} values for {rows} x {vocab}")
        dense = values.float().reshape(rows, vocab)
    elif message.encoding == pb.Distributions.SPARSE_FP16:
        indices = _frombuffer(message.indices, torch.int32, "indices").long()
        lengths = list(message.row_lengths)
        if len(lengths) != rows or sum(lengths) != values.numel() or indices.numel() != values.numel():
            raise ValueError("distributions: row_lengths, indices and values disagree")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab):
            raise ValueError("distributions: index out of vocabulary")
        row_idx = torch.repeat_interleave(torch.arange(rows), torch.tensor(lengths, dtype=torch.long))
        dense = torch.zeros(rows, vocab)
        dense[row_idx, indices] = values.float()
    else:
        raise ValueError(f"distributions: unknown encoding {message.encoding}")
    sums = dense.sum(-1, keepdim=True)
    if not bool(torch.isfinite(dense).all()) or bool((dense < 0).any()) or bool((sums <= 0).any()):
        raise ValueError("distributions: rows must be finite, non-negative and have positive mass")
    return dense / sums


def _frombuffer(data: bytes, dtype: torch.dtype, name: str) -> torch.Tensor:
    itemsize = torch.tensor([], dtype=dtype).element_size()
    if len(data) % itemsize:
        raise ValueError(f"distributions: {name} is {len(data)} bytes, not a multiple of {itemsize}")
    if not data:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=dtype)


def encode_top(rows: TopRows) -> pb.TopDistributions:
    indices = rows.indices.detach().to("cpu", torch.int32).contiguous()
    values = rows.values.detach().to("cpu", torch.float32).contiguous()
    return pb.TopDistributions(rows=rows.rows, k=int(indices.shape[1]), vocab_size=rows.vocab_size,
                               indices=indices.numpy().tobytes(), values=values.numpy().tobytes())


def decode_top(message: pb.TopDistributions, vocab_size: int | None = None) -> TopRows:
    """TopDistributions -> TopRows. Raises ValueError on a malformed message (a shape that disagrees, an
    index outside the vocabulary, values that are not a distribution). `vocab_size`: the one expected (None:
    the message's own, from a trusted peer)."""
    rows, k = message.rows, message.k
    vocab_size = message.vocab_size if vocab_size is None else vocab_size
    if rows < 0 or k <= 0 or message.vocab_size != vocab_size:
        raise ValueError(f"bad shape rows={rows} k={k} vocab_size={message.vocab_size} (expected vocab {vocab_size})")
    indices = _frombuffer(message.indices, torch.int32, "indices").long()
    values = _frombuffer(message.values, torch.float32, "values")
    if indices.numel() != rows * k or values.numel() != rows * k:
        raise ValueError(f"{indices.numel()} indices and {values.numel()} values for {rows} x {k}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab_size):
        raise ValueError("index out of vocabulary")
    values = values.reshape(rows, k)
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()) or \
            bool(((values.sum(-1) - 1).abs() > 1e-3).any()):
        raise ValueError("rows must be finite, non-negative and sum to 1")
    return TopRows(indices.reshape(rows, k), values, vocab_size)



FEATURE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def encode_features(features: FeatureRows) -> pb.Features:
    """A feature head's input as raw float16 / bfloat16 bytes (2 bytes a value)."""
    values = features.values.contiguous()
    name = str(values.dtype).removeprefix("torch.")
    if name not in FEATURE_DTYPES:
        raise ValueError(f"features: dtype {name} does not travel; one of {sorted(FEATURE_DTYPES)}")
    rows, width = values.shape
    data = values.view(torch.int16).numpy().tobytes()
    return pb.Features(start=features.start, rows=rows, width=width, dtype=name, data=data)


def decode_features(message: pb.Features) -> FeatureRows:
    if message.dtype not in FEATURE_DTYPES:
        raise ValueError(f"dtype {message.dtype!r} is not one of {sorted(FEATURE_DTYPES)}")
    if message.rows < 0 or message.width < 0 or message.start < 0:
        raise ValueError(f"start {message.start}, rows {message.rows} and width {message.width} must be >= 0")
    values = _frombuffer(message.data, torch.int16, "data").view(FEATURE_DTYPES[message.dtype])
    if values.numel() != message.rows * message.width:
        raise ValueError(f"data holds {values.numel()} values, not rows x width = {message.rows} x {message.width}")
    return FeatureRows(message.start, values.reshape(message.rows, message.width))
