"""The DROID suite files parse into the protocol and tasks the brief asks for; bad data is one clear error."""

import copy

import pytest
import yaml

from evalkit.core.errors import EvalkitError
from evalkit.suites.registry import PACKAGED_TASKS, build_suite, resolve


def _data():
    return yaml.safe_load((PACKAGED_TASKS / "droid" / "droid.yaml").read_text())


def test_droid_suite_protocol_and_tasks(droid_suite):
    p = droid_suite.protocol
    assert droid_suite.kind == "droid" and droid_suite.embodiment == "droid"
    assert p.control_hz == 15 and p.render_size == (180, 320) and p.image_size == (224, 224)
    assert p.wire_cameras == (
        "observation/exterior_image_1_left",
        "observation/exterior_image_2_left",
        "observation/wrist_image_left",
    )
    assert p.replan_steps == 8 and p.action_dim == 8 and p.state_dim == 8 and p.episodes_per_task == 20
    assert p.action_mode == "joint_velocity"
    assert len(droid_suite.tasks) >= 12
    scenes = {droid_suite.options["droid"].tasks[t.task_id].scene for t in droid_suite.tasks}
    assert len(scenes) >= 4
    kinds = {t.success.kind for t in droid_suite.options["droid"].tasks}
    assert kinds == {"inside", "on_top", "lifted", "next_to", "joint_above", "joint_below"}


def test_demo_suite_and_jointpos_preset():
    demo = resolve("droid_demo")[0]
    assert 3 <= len(demo.tasks) <= 4 and demo.protocol.episodes_per_task == 2
    assert [t.task_id for t in demo.tasks] == list(range(len(demo.tasks)))
    jointpos = resolve("droid", protocol="droid_jointpos")[0]
    assert jointpos.protocol.action_mode == "joint_position"
    assert jointpos.options["droid"].action_mode == "joint_position"


def test_scene_changes_change_the_protocol_fingerprint():
    base = build_suite("droid", _data())
    data = _data()
    data["scenes"]["blocks"]["objects"][0]["x"] = [-0.1, 0.0]
    changed = build_suite("droid", data)
    assert dict(base.protocol.extra)["scene_fingerprint"] != dict(changed.protocol.extra)["scene_fingerprint"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["tasks"][0]["success"].update(kind="levitate"), "kind must be one of"),
        (lambda d: d["tasks"][0]["success"].update(object="unicorn"), "no object 'unicorn'"),
        (lambda d: d["tasks"][0].update(scene="moon"), "unknown scene"),
        (lambda d: d["scenes"]["blocks"]["objects"][0].update(colour="red"), "unknown keys"),
        (lambda d: d["scenes"]["blocks"]["objects"][0].update(asset="sketchfab:cat"), "asset must be"),
        (lambda d: d.update(task_names=["no_such_task"]), "unknown tasks"),
        (lambda d: d.update(protocol="warp_drive"), "unknown protocol 'warp_drive'"),
    ],
)
def test_bad_suite_data_is_one_clear_error(edit, message):
    data = copy.deepcopy(_data())
    edit(data)
    with pytest.raises(EvalkitError, match=message):
        build_suite("droid", data)
