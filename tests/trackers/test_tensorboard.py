"""TensorBoard: the event files of a real run, read back with TensorBoard's own reader (EventAccumulator)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from evalkit.report.stats import wilson
from tests.system import import_or_skip

# slow: evalkit eval in a subprocess (the logged run)
pytestmark = pytest.mark.slow

import_or_skip("tensorboardX", "pip install -e '.[tensorboard]'")
accumulator = import_or_skip(
    "tensorboard.backend.event_processing.event_accumulator", "pip install -e '.[trackers]'"
)


@pytest.fixture(scope="module")
def events(logged_run):
    acc = accumulator.EventAccumulator(
        str(logged_run.log_dir / logged_run.run_dir.name),
        size_guidance={"scalars": 0, "images": 0, "tensors": 0},
    )
    acc.Reload()
    return acc


def scalar(events, tag: str) -> float:
    (event,) = events.Scalars(tag)
    return event.value


def test_logged_success_equals_the_store(logged_run, events):
    assert scalar(events, "success_pct/overall") == pytest.approx(logged_run.store_success_pct())
    assert scalar(events, "success_pct/droid_demo") == pytest.approx(50.0)
    assert scalar(events, "task_success_pct/droid_demo/task00") == pytest.approx(
        logged_run.store_success_pct(0)
    )
    assert scalar(events, "task_success_pct/droid_demo/task03") == pytest.approx(
        logged_run.store_success_pct(3)
    )
    interval = wilson(1, 2)
    assert scalar(events, "success_pct/overall_ci95_low") == pytest.approx(100 * interval.low, abs=0.01)
    assert scalar(events, "success_pct/overall_ci95_high") == pytest.approx(100 * interval.high, abs=0.01)
    assert scalar(events, "episodes") == 2
    assert scalar(events, "episodes_per_hour") > 0
    assert scalar(events, "latency_ms/droid_demo/mean") > 0


def test_config_carries_the_protocol_fingerprint(logged_run, events):
    from tests.helpers import read_manifest

    (text,) = events.Tensors("config/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert read_manifest(logged_run.run_dir)["protocol_fingerprint"] in table
    assert "| policy | oracle |" in table


def test_videos_are_animated_gifs(events):
    (image,) = events.Images("videos/droid_demo/task03/init000")
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames > 10
    assert (gif.width, gif.height) == (image.width, image.height)
