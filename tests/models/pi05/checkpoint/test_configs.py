"""Training configs: named or read from the checkpoint, never guessed from a path; norm stats checked against them."""

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint import (
    load_checkpoint,
)
from tests.models.pi05.checkpoint.helpers import FIXTURE_CONFIG, bad_stats, openpi_dir, write_stats


def test_the_config_is_never_guessed_from_the_path(tmp_path):
    # a hub download lands in .../owner--name/main: a meaningless name loads with the config given...
    d = openpi_dir(tmp_path / "hub" / "org--pi05", asset="droid", name="main", action_dim=8)
    ckpt = load_checkpoint(d, "pi05_droid_jointpos", model_config_file=FIXTURE_CONFIG)
    assert ckpt.training_config.absolute_joint_actions and ckpt.config.action_horizon == 15
    assert ckpt.config.discrete_state_input and ckpt.training_config.action_mode == "joint_position"
    assert load_checkpoint(d, "pi05_droid", model_config_file=FIXTURE_CONFIG).training_config.action_mode == (
        "joint_velocity"
    )
    # ...and is refused in one line without it, whatever the directory or its assets are called
    for path in (d, openpi_dir(tmp_path, name="pi05_libero")):
        with pytest.raises(
            EvalkitError, match=r"record their training config; pass --config \{pi05_libero,"
        ) as e:
            load_checkpoint(path, model_config_file=FIXTURE_CONFIG)
        assert "\n" not in str(e.value)
    with pytest.raises(EvalkitError, match="unknown pi05 config 'pi05_aloha'"):
        load_checkpoint(d, "pi05_aloha")
    with pytest.raises(EvalkitError, match="cannot infer the SigLIP head count"):
        load_checkpoint(d, "pi05_droid")  # the tiny fixture's SigLIP needs an explicit model config


@pytest.mark.parametrize(
    "kind, message",
    [
        ("dims", "actions stats have 6 dims; config pi05_libero needs 7"),
        ("order", r"state stats have q01 > q99 at dim 0 \(5 > 1\)"),
        ("nan", "expected a finite 1-D list"),
    ],
)
def test_user_norm_stats_are_checked(tmp_path, kind, message):
    d = openpi_dir(tmp_path)
    bad = bad_stats(tmp_path / f"{kind}.json", kind)
    with pytest.raises(EvalkitError, match=message):
        load_checkpoint(d, "pi05_libero", bad, model_config_file=FIXTURE_CONFIG)
    padded = write_stats(tmp_path / "padded.json", state_dim=32, action_dim=32)  # openpi's older padded stats
    assert load_checkpoint(d, "pi05_libero", padded, model_config_file=FIXTURE_CONFIG).norm.actions.dim == 32


def test_missing_norm_stats_is_an_error(tmp_path):
    with pytest.raises(
        EvalkitError, match="missing norm stats .*physical-intelligence/libero/norm_stats.json"
    ):
        load_checkpoint(openpi_dir(tmp_path, asset=None), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    d = openpi_dir(tmp_path, asset="droid", name="other")
    with pytest.raises(EvalkitError, match=r"found: \['droid'\]"):
        load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)
