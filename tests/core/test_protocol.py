import dataclasses

import pytest

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import (
    Availability,
    SuiteSpec,
    TaskSpec,
    UnavailableTask,
    check_embodiment,
    episodes_for,
    protocol_from_dict,
)
from evalkit.suites import registry


def _openpi() -> dict:
    base = dataclasses.asdict(registry.resolve("libero_spatial")[0].protocol)
    base["cameras"] = [list(c) for c in base["cameras"]]
    base.pop("extra")
    return base


def test_protocol_from_dict_validates_fields():
    base = _openpi()
    assert protocol_from_dict(base).cameras[0] == ("observation/image", "agentview")
    with pytest.raises(EvalkitError, match="lacks max_steps"):
        protocol_from_dict({k: v for k, v in base.items() if k != "max_steps"})
    with pytest.raises(EvalkitError, match="replan_steps must be positive"):
        protocol_from_dict({**base, "replan_steps": 0})
    with pytest.raises(EvalkitError, match=r"render_size must be \[height, width\]"):
        protocol_from_dict({**base, "render_size": 256})
    with pytest.raises(EvalkitError, match="episode_seeds must be one of same, plus_index"):
        protocol_from_dict({**base, "episode_seeds": "random"})
    with pytest.raises(EvalkitError, match="action_mode must be one of"):
        protocol_from_dict({**base, "action_mode": "torque"})
    with pytest.raises(EvalkitError, match="init_states must be 'index'"):
        protocol_from_dict({**base, "init_states": "shuffled"})
    assert protocol_from_dict({**base, "init_states": "index"}) == protocol_from_dict(base)
    with pytest.raises(EvalkitError, match="seed in"):
        protocol_from_dict({**base, "seed": 2**63})


def test_protocol_must_speak_its_embodiment():
    proto = protocol_from_dict(_openpi())
    check_embodiment(proto, EMBODIMENTS["libero"], "t")
    with pytest.raises(EvalkitError, match="droid protocols have action_dim 8"):
        check_embodiment(proto, EMBODIMENTS["droid"], "t")
    velocity = dataclasses.replace(proto, action_mode="joint_velocity")
    with pytest.raises(EvalkitError, match="libero actions are eef_delta"):
        check_embodiment(velocity, EMBODIMENTS["libero"], "t")
    cams = dataclasses.replace(proto, cameras=(("observation/exterior_image_1_left", "agentview"),))
    with pytest.raises(EvalkitError, match="not libero wire keys"):
        check_embodiment(cams, EMBODIMENTS["libero"], "t")
    slow = dataclasses.replace(proto, control_hz=10.0)  # the policy's chunks would play at half speed
    with pytest.raises(
        EvalkitError, match=r"libero policies act at 20 Hz \(the rate of their training data\), not 10 Hz"
    ):
        check_embodiment(slow, EMBODIMENTS["libero"], "t")


def test_episode_seeds_follow_the_protocol():
    (suite,) = registry.resolve("libero_spatial", tasks=[1], episodes_per_task=3)
    assert [(e.init_state, e.seed) for e in episodes_for([suite])] == [(0, 7), (1, 7), (2, 7)]
    plus = dataclasses.replace(
        suite, protocol=dataclasses.replace(suite.protocol, episode_seeds="plus_index")
    )
    assert [(e.init_state, e.seed) for e in episodes_for([plus])] == [(0, 7), (1, 8), (2, 9)]
    with pytest.raises(EvalkitError, match="has 50 initial states; asked for 51"):
        episodes_for(
            [dataclasses.replace(suite, protocol=dataclasses.replace(suite.protocol, episodes_per_task=51))]
        )


def test_availability_counts_by_reason_and_says_it_in_one_line():
    proto = protocol_from_dict(_openpi())
    missing = (
        UnavailableTask(
            3, "c", "do c", "needs asset pack: x/", "assets missing: x/c.xml", {"dimension": "light"}
        ),
        UnavailableTask(1, "a", "do a", "needs ImageMagick"),
        UnavailableTask(4, "d", "do d", "needs asset pack: x/", tags={"dimension": "light"}),
    )
    task = TaskSpec(0, "t", "do t", 5, tags={"dimension": "camera", "level": 2})
    suite = SuiteSpec(
        "s", "libero", "libero", proto, (task,), availability=Availability(missing, hint="get x")
    )
    assert suite.availability.by_reason() == {"needs asset pack: x/": 2, "needs ImageMagick": 1}
    assert suite.availability.task(3).why == "assets missing: x/c.xml" and suite.availability.task(1).why == (
        "needs ImageMagick"
    )
    assert suite.availability.task(0) is None
    assert suite.unavailable_note() == (
        "3 tasks cannot run here and are not evaluated (2 needs asset pack: x/; 1 needs ImageMagick); get x; "
        "`evalkit suites s --unavailable` lists them"
    )
    assert dataclasses.replace(suite, availability=Availability()).unavailable_note() == ""
    assert {task} == {dataclasses.replace(task)}  # its tags (a dict) leave it hashable


# --- the balanced episode order (issue 18 item 2) ------------------------------------------------------------------


def _libero_group():
    suites = registry.resolve("libero")  # 4 suites x 10 tasks x 50 episodes
    salts = {s.name: f"fingerprint-of-{s.name}" for s in suites}
    return suites, salts


def test_every_prefix_of_k_rounds_holds_k_episodes_of_each_task():
    from collections import Counter

    from evalkit.core.protocol import balanced_order

    suites, salts = _libero_group()
    episodes = episodes_for(suites)
    order = balanced_order(episodes, salts)
    tasks = {(e.suite, e.task_id) for e in episodes}
    assert len(tasks) == 40 and len(order) == 2000
    for k in range(1, 51):
        counts = Counter((e.suite, e.task_id) for e in order[: k * len(tasks)])
        assert set(counts) == tasks and set(counts.values()) == {k}, k
    # the same episodes, identities untouched: only their order changes
    assert sorted(order) == sorted(episodes) and len(set(order)) == len(order)


def test_init_states_come_in_a_fixed_shuffled_order_seeded_by_the_protocol():
    from evalkit.core.protocol import balanced_order

    suites, salts = _libero_group()
    episodes = episodes_for(suites)
    order = balanced_order(episodes, salts)
    first_task = [e.init_state for e in order if (e.suite, e.task_id) == ("libero_spatial", 0)]
    assert sorted(first_task) == list(range(50)) and first_task != list(range(50))
    # each task has its own shuffle, so a prefix does not judge init state 0 of every task first
    second_task = [e.init_state for e in order if (e.suite, e.task_id) == ("libero_spatial", 1)]
    assert first_task != second_task
    # a function of the set of episodes and the salts only: input order does not matter, the salt does
    assert balanced_order(list(reversed(episodes)), salts) == order
    other = balanced_order(episodes, {**salts, "libero_spatial": "another protocol"})
    assert other != order and [e for e in other if e.suite != "libero_spatial"] == [
        e for e in order if e.suite != "libero_spatial"
    ]


def test_a_task_with_fewer_episodes_drops_out_of_later_rounds():
    from evalkit.core.episode import EpisodeSpec
    from evalkit.core.protocol import balanced_order

    episodes = [EpisodeSpec("a", 0, k, 7) for k in range(3)] + [EpisodeSpec("b", 5, 0, 7)]
    order = balanced_order(episodes, {"a": "x", "b": "y"})
    assert [(e.suite, e.task_id) for e in order] == [("a", 0), ("b", 5), ("a", 0), ("a", 0)]
    assert balanced_order([], {}) == []
