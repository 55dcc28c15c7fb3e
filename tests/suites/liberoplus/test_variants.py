"""Every one of the wheel's 10,030 variant names parses into (dimension, level, base task), and prompts are right."""

from __future__ import annotations

from collections import Counter

import pytest

from evalkit.suites.liberoplus.catalog import BENCHMARK_SUITES, suite_variants, task_map
from evalkit.suites.liberoplus.variants import DIMENSIONS, VariantNameError, benchmark_language, parse_variant

# Per-dimension totals of LIBERO-plus (paper / upstream task_classification categories).
EXPECTED = {
    "camera": 1599,
    "robot": 1550,
    "language": 1537,
    "light": 1142,
    "background": 1076,
    "noise": 1601,
    "layout": 1525,
}


def test_all_variant_names_parse() -> None:
    names = [(suite, n) for suite in BENCHMARK_SUITES for n in task_map()[suite]]
    assert len(names) == 10030
    counts = Counter()
    bases: dict[str, set[str]] = {suite: set() for suite in BENCHMARK_SUITES}
    for suite, name in names:
        info = parse_variant(name)
        counts[info.dimension] += 1
        bases[suite].add(info.base_task)
        assert info.dimension in DIMENSIONS
        assert name.startswith(info.base_task)
        if info.dimension == "noise":
            assert 1 <= info.level <= 10 and 1 <= info.index <= 50
        elif info.dimension == "layout" and info.param["layout"] == "displace_target":
            assert 1 <= info.level <= 5
        else:
            assert info.level is None
    assert dict(counts) == EXPECTED
    # each suite perturbs exactly its 10 LIBERO tasks
    assert {suite: len(b) for suite, b in bases.items()} == dict.fromkeys(BENCHMARK_SUITES, 10)


@pytest.mark.parametrize(
    ("name", "dimension", "level", "index", "base"),
    [
        (
            "put_the_bowl_on_the_plate_view_0_0_100_2_352_initstate_0",
            "camera",
            None,
            None,
            "put_the_bowl_on_the_plate",
        ),
        (
            "put_the_bowl_on_the_plate_view_0_0_100_0_0_initstate_17",
            "robot",
            None,
            17,
            "put_the_bowl_on_the_plate",
        ),
        (
            "put_the_bowl_on_the_plate_view_0_0_100_0_0_initstate_0_noise_33",
            "noise",
            3,
            33,
            "put_the_bowl_on_the_plate",
        ),
        (
            "put_the_bowl_on_the_plate_language_4_view_0_0_100_0_0_initstate_0",
            "language",
            None,
            4,
            "put_the_bowl_on_the_plate",
        ),
        (
            "pick_up_the_black_bowl_from_table_center_and_place_it_on_the_plate_table_11",
            "background",
            None,
            11,
            None,
        ),
        ("turn_on_the_stove_moved_level3_sample2", "layout", 3, 2, "turn_on_the_stove"),
        ("turn_on_the_stove_add_7", "layout", None, 7, "turn_on_the_stove"),
        ("turn_on_the_stove_light_50", "light", None, 50, "turn_on_the_stove"),
    ],
)
def test_parse_examples(name: str, dimension: str, level, index, base) -> None:
    info = parse_variant(name)
    assert (info.dimension, info.level, info.index) == (dimension, level, index)
    if base is not None:
        assert info.base_task == base
    if dimension == "noise":
        assert info.param["noise_type"] == "fog"


def test_table_in_a_base_name_is_not_a_background_code() -> None:
    info = parse_variant("pick_up_the_black_bowl_from_table_center_and_place_it_on_the_plate_table_11")
    assert info.base_task == "pick_up_the_black_bowl_from_table_center_and_place_it_on_the_plate"


@pytest.mark.parametrize(
    "name", ["put_the_bowl_on_the_plate", "x_view_0_0_100_0_0_initstate_0", "x_noise_51"]
)
def test_non_variant_names_are_rejected(name: str) -> None:
    with pytest.raises(VariantNameError):
        parse_variant(name)


def test_benchmark_language_drops_libero10_scene_prefix() -> None:
    assert (
        benchmark_language("KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it_light_2")
        == "turn on the stove and put the moka pot on it light 2"
    )
    assert benchmark_language("LIVING_ROOM_SCENE10_put_it_add_1") == "put it add 1"


def _variant(suite: str, name: str):
    return next(v for v in suite_variants(suite) if v.name == name)


def test_prompts_of_a_camera_variant() -> None:
    v = _variant(
        "libero_spatial",
        "pick_up_the_black_bowl_on_the_cookie_box_and_place_it_on_the_plate_view_0_0_100_8_350_initstate_0",
    )
    # upstream's Task.language keeps the name's suffix (LIBERO-plus#65); the clean prompt is the base task's
    assert (
        v.upstream_prompt
        == "pick up the black bowl on the cookie box and place it on the plate view 0 0 100 8 350 initstate 0"
    )
    assert v.clean_prompt == "pick up the black bowl on the cookie box and place it on the plate"


def test_prompts_of_a_language_variant() -> None:
    name = "pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate_language_1_view_0_0_100_0_0_initstate_0"
    v = _variant("libero_spatial", name)
    expected = (
        "grasp the darkhued rounded container situated between the flat dish used for serving food and the small "
        "glazed ceramic dish and set it down onto the flat dish used for serving food"
    )
    # both protocols send the rewritten instruction of `<base>_language_1.bddl` (upstream's get_problem_info)
    assert v.upstream_prompt == expected
    assert v.clean_prompt == expected
    assert v.scene_bddl.endswith("_plate_language_1.bddl")
