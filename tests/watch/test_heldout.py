"""Held-out episodes are identities no checkpoint was selected on: new init states where the tasks have them, else
the same init states under seeds the selection never used (real suites resolved from tasks/)."""

from __future__ import annotations

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import episodes_for
from evalkit.suites import registry
from evalkit.watch.heldout import heldout_episodes


def suites(name: str, **changes):
    return registry.resolve(name, **changes)


def test_droid_demo_gets_new_init_states():
    resolved = suites("droid_demo", episodes_per_task=3)
    selection = set(episodes_for(resolved))
    episodes, words = heldout_episodes(resolved, None)
    assert not selection & set(episodes)
    assert {e.init_state for e in episodes} == {3, 4, 5}
    assert {e.seed for e in episodes} == {7}  # the protocol's seed rule, for the new init states
    assert len(episodes) == len(selection) == 4 * 3
    assert "droid_demo: init states 3..5 of each task (the selection used init states 0..2)" in words


def test_libero_full_protocol_gets_the_same_init_states_under_a_new_seed():
    """openpi's LIBERO protocol uses all 50 init states of each task: only the seed can change."""
    resolved = suites("libero_spatial")
    episodes, words = heldout_episodes(resolved, 5)
    assert {e.init_state for e in episodes} == set(range(5))
    assert {e.seed for e in episodes} == {7 + 50}
    assert not set(episodes_for(resolved)) & set(episodes)
    assert "seed 57 (the selection used seed 7" in words and "start states are the selection's" in words


def test_reseeding_protocol_keeps_seeds_disjoint():
    """lerobot's protocol seeds episode k with seed + k: the held-out seeds start past the selection's."""
    resolved = suites("libero_spatial", protocol="lerobot", episodes_per_task=45)
    selection = episodes_for(resolved)
    episodes, words = heldout_episodes(resolved, 10)
    assert {e.init_state for e in episodes} == set(range(10))
    assert not {e.seed for e in selection} & {e.seed for e in episodes}
    assert "seeds 1045+k" in words


def test_more_held_out_episodes_than_init_states_is_refused():
    with pytest.raises(EvalkitError, match="lower --heldout-episodes-per-task"):
        heldout_episodes(suites("libero_spatial"), 51)
