"""The verify-time curve: one point per width, relative to one position, on a locally built random Llama."""

from __future__ import annotations

from specdec.config import resolve_model
from specdec.orchestrator.measure.verify_curve import curve_of, random_llama
from specdec.services.runtime.model import CausalLM, LoadSpec

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}


def test_a_random_llama_is_built_locally_with_the_given_shape(tmp_path):
    folder = random_llama(tmp_path / "llama", resolve_model("demo:target"), TINY, dtype="float32")
    lm = CausalLM(LoadSpec(folder, "float32", "cpu"))
    assert lm.model.config.num_hidden_layers == 2 and lm.model.config.hidden_size == 64
    assert lm.forward_kind == "lean"  # a Llama: the runtime's own forward is what gets timed


def test_the_curve_has_a_point_per_width_relative_to_one_position(tmp_path):
    folder = random_llama(tmp_path / "llama", resolve_model("demo:target"), TINY, dtype="float32")
    record = curve_of(folder, "float32", "cpu", (1, 3, 8), repeats=2)
    assert [point["positions"] for point in record["points"]] == [1, 3, 8]
    assert record["points"][0]["relative"] == 1.0
    assert all(point["seconds"] > 0 for point in record["points"])
    assert record["parameters"] > 0 and record["device"] == "cpu"
