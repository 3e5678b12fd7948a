"""Test order: the cluster tests first. They start and stop Ray with the `ray` command, and `ray stop`
stops every Ray process on the machine, so they must not run while another layer holds a Ray cluster."""

from __future__ import annotations


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: 0 if "/tests/cluster/" in str(item.path) else 1)  # stable: keeps the rest in order
