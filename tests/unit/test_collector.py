"""The collector pause used by the projection feed and by rebuilds."""

from __future__ import annotations

import gc

import pytest

from projections.collector import collector_paused


def test_the_collector_is_off_inside_and_on_again_after() -> None:
    assert gc.isenabled()
    with collector_paused(0):
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_nested_pause_leaves_the_collector_to_the_outer_one() -> None:
    with collector_paused():
        with collector_paused(0):
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_comes_back_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), collector_paused(0):
        raise RuntimeError("boom")
    assert gc.isenabled()
