"""The project's errors survive pickling with their data (Ray carries an actor's exception to the driver so)."""

from __future__ import annotations

import pickle

import pytest

from specdec.errors import InvalidField, ServiceFailed, SessionError


@pytest.mark.parametrize("error", [InvalidField("target.num_gpus", "too small", "FAILED_PRECONDITION"),
                                   SessionError("keep_len", "past the cache", "NOT_FOUND"),
                                   ServiceFailed("127.0.0.1:1", "INTERNAL", "boom")])
def test_an_error_pickles_with_its_fields(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
