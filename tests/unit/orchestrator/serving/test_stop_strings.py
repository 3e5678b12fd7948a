"""Stop strings over streamed text: found across delta boundaries, cut before, text that could begin one
held back only as long as it could."""

from __future__ import annotations

import pytest

from specdec.orchestrator.serving.stop_strings import StopStrings


def run(deltas: list[str], stops: tuple[str, ...]) -> tuple[list[str], bool]:
    checker, released = StopStrings(stops), []
    for delta in deltas:
        text, stopped = checker.push(delta)
        released.append(text)
        if stopped:
            return released, True
    released.append(checker.flush())
    return released, False


@pytest.mark.parametrize("deltas, stops, released, stopped", [
    (["def f", "(x):\n", "    return"], ("\n",), ["def f", "(x):"], True),
    (["a b", "c d"], ("bc",), ["a ", ""], True),  # spans two deltas: "b" held back, then cut
    (["ab", "x"], ("bc",), ["a", "bx", ""], False),  # "b" held back, released when "x" shows it is no stop
    (["x\n\n", "y"], ("\n\n", "x"), [""], True),  # the earliest stop string wins
    (["hello"], (), ["hello", ""], False),
    (["ret", "ur", "n 1"], ("return",), ["", "", ""], True),
    (["a<", "|e", "nd|>tail"], ("<|end|>",), ["a", "", ""], True),
])
def test_table(deltas, stops, released, stopped):
    assert run(deltas, stops) == (released, stopped)


def test_released_text_is_the_text_before_the_first_stop_string():
    text = "for i in range(10):\n    print(i)\n# done\n"
    for cut in range(1, len(text)):
        released, stopped = run([text[:cut], text[cut:]], ("print", "# done"))
        assert stopped and "".join(released) == text[:text.index("print")]


def test_an_empty_stop_string_is_refused():
    with pytest.raises(ValueError):
        StopStrings(("",))
