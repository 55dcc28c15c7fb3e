"""Instructions in tables and plot labels are cut between words, with an ellipsis."""

from evalkit.report.formatting import shorten_at_word, wrap_label
from evalkit.report.summary import merge_orders

LONG = "pick up the black bowl between the plate and the ramekin and place it on the plate"


def test_shorten_cuts_at_a_word_with_an_ellipsis():
    short = shorten_at_word(LONG, 60)
    assert short == "pick up the black bowl between the plate and the ramekin…" and len(short) <= 60
    assert shorten_at_word("close the drawer", 60) == "close the drawer"
    assert shorten_at_word("x" * 70, 10) == "x" * 9 + "…"


def test_wrap_label_wraps_and_keeps_the_end():
    label = wrap_label(LONG, width=30, max_lines=2)
    lines = label.split("\n")
    assert len(lines) == 2 and all(len(line) <= 30 for line in lines)
    assert lines[0] == "pick up the black bowl between" and lines[1] == "… and place it on the plate"
    assert wrap_label(LONG, width=30, max_lines=3).replace("\n", " ") == LONG  # room enough: nothing cut


VARIANT = f"{LONG} view 0 0 100 0 0 initstate 11"


def test_task_variants_keep_their_suffix_in_labels_and_console_tables():
    """Issue 22: LIBERO-plus chart labels were cut before the variant suffix, so variants looked alike."""
    from evalkit.report.formatting import shorten_middle

    assert wrap_label(VARIANT).endswith("view 0 0 100 0 0 initstate 11")
    assert wrap_label(VARIANT) != wrap_label(VARIANT.replace("initstate 11", "initstate 1"))
    short = shorten_middle(VARIANT, 60)
    assert short == "pick up the black bowl … view 0 0 100 0 0 initstate 11" and len(short) <= 60
    assert shorten_middle("close the drawer", 60) == "close the drawer"
    assert shorten_middle("x" * 70, 10) == "x" * 9 + "…"


def test_stages_merge_into_the_order_they_happen():
    pick = ["reached", "grasped", "lifted", "success"]
    drawer = ["reached", "moved", "success"]
    expected = ["reached", "grasped", "lifted", "moved", "success"]
    assert merge_orders([pick, drawer]) == merge_orders([drawer, pick]) == expected
