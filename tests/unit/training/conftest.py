"""A tiny corpus for the distillation tests: 40 small Python files."""

from __future__ import annotations

import pytest

CODE = "def add(a, b):\n    return a + b\n\n\nclass Stack:\n    def push(self, item):\n        self.items.append(1)\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for index in range(40):
        (folder / f"m{index}.py").write_text(CODE.replace("add", f"add{index}") * 3)
    return folder
