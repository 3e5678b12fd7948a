"""Wire encoding of distributions: compact, exact round trip, clear errors on malformed input."""

from __future__ import annotations

import pytest
import torch

from specdec.types import TopRows
from specdec.v1 import specdec_pb2 as pb
from specdec.wire import encoding


def dense_probs(rows: int, vocab: int) -> torch.Tensor:
    return torch.softmax(torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)), -1)


def test_dense_round_trip_equals_wire_precision_bit_for_bit():
    probs = dense_probs(5, 300)
    message = encoding.encode(probs)
    assert message.encoding == pb.Distributions.DENSE_FP16
    assert len(message.values) == 5 * 300 * 2  # fp16, not fp32
    assert torch.equal(encoding.decode(message), encoding.wire_precision(probs))


def test_sparse_rows_use_the_sparse_form_and_round_trip():
    probs = dense_probs(3, 1000)
    probs[:, 10:] = 0
    probs = probs / probs.sum(-1, keepdim=True)
    message = encoding.encode(probs)
    assert message.encoding == pb.Distributions.SPARSE_FP16
    assert list(message.row_lengths) == [10, 10, 10]
    assert torch.equal(encoding.decode(message), encoding.wire_precision(probs))


def test_wire_precision_rows_sum_to_one():
    sums = encoding.wire_precision(dense_probs(4, 50)).sum(-1)
    assert torch.allclose(sums, torch.ones(4), atol=1e-6)


@pytest.mark.parametrize(
    "message, match",
    [
        (pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=2, vocab_size=4, values=b"\0" * 6), "values"),
        (pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=1, vocab_size=4, values=b"\0" * 8), "mass"),
        (pb.Distributions(encoding=pb.Distributions.SPARSE_FP16, rows=1, vocab_size=4, values=b"\0\x3c",
                          indices=(7).to_bytes(4, "little"), row_lengths=[1]), "index"),
        (pb.Distributions(encoding=pb.Distributions.SPARSE_FP16, rows=2, vocab_size=4, values=b"\0\x3c",
                          indices=(1).to_bytes(4, "little"), row_lengths=[1]), "disagree"),
        (pb.Distributions(rows=1, vocab_size=4), "encoding"),
        (pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=1, vocab_size=0), "shape"),
    ],
)
def test_malformed_messages_raise(message, match):
    with pytest.raises(ValueError, match=match):
        encoding.decode(message)


def top_rows(rows: int = 3, k: int = 4, vocab: int = 50_000, seed: int = 0) -> TopRows:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(rows, vocab, generator=g) * 4, -1)
    values, indices = probs.topk(k, dim=-1)
    return TopRows(indices, values / values.sum(-1, keepdim=True), vocab)


def test_top_rows_round_trip_exactly_and_their_size_does_not_grow_with_the_vocabulary():
    sizes = []
    for vocab in (2048, 128_000):
        rows = top_rows(vocab=vocab)
        message = encoding.encode_top(rows)
        back = encoding.decode_top(pb.TopDistributions.FromString(message.SerializeToString()), vocab)
        assert torch.equal(back.indices, rows.indices) and torch.equal(back.values, rows.values)  # bit for bit
        assert torch.equal(back.dense(), rows.dense())
        sizes.append(message.ByteSize())
    assert abs(sizes[0] - sizes[1]) <= 4 and sizes[1] < 3 * 4 * 8 + 32  # 8 bytes an entry, plus a header


@pytest.mark.parametrize("change, match", [
    (dict(vocab_size=10), "vocab"), (dict(k=5), "indices"), (dict(values=b"\0" * 48), "sum to 1"),
    (dict(indices=torch.full((12,), 60_000, dtype=torch.int32).numpy().tobytes()), "out of vocabulary")])
def test_malformed_top_rows_raise(change, match):
    message = encoding.encode_top(top_rows())
    for field_name, value in change.items():
        setattr(message, field_name, value)
    with pytest.raises(ValueError, match=match):
        encoding.decode_top(message, 50_000)
