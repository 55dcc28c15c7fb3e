"""TensorBoard through tensorboardX (the `tensorboard` extra): scalars per metric, the config as a text table, and
episode videos as animated GIFs in the images dashboard (TensorBoard shows a GIF-encoded image summary animated).

Event files go to `<run dir>/tensorboard`, or `<--log-dir>/<run name>` so that one TensorBoard shows many runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.trackers.base import require
from evalkit.trackers.config import TrackerOptions
from evalkit.trackers.record import EpisodeVideo, RunRecord, Scalar

GIF_MAX_FRAMES = 80  # frames kept per video (evenly spaced), so an event file stays small
GIF_MAX_HEIGHT = 160


def log_dir(run_name: str, options: TrackerOptions, run_dir: Path) -> Path:
    return options.log_dir / run_name if options.log_dir is not None else run_dir / "tensorboard"


def gif_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """Evenly spaced, downscaled frames of an mp4 and the frame duration (ms) that keeps its real-time length."""
    import imageio.v2 as imageio
    from PIL import Image

    reader = imageio.get_reader(path)
    try:
        fps = float(reader.get_meta_data().get("fps") or 10.0)
        frames = [np.asarray(frame) for frame in reader]
    finally:
        reader.close()
    if not frames:
        raise EvalkitError(f"video {path} has no frames")
    keep = np.unique(np.linspace(0, len(frames) - 1, min(GIF_MAX_FRAMES, len(frames))).round().astype(int))
    height, width = frames[0].shape[:2]
    scale = min(1.0, GIF_MAX_HEIGHT / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = [np.asarray(Image.fromarray(frames[i]).resize(size)) for i in keep]
    return small, 1000.0 * len(frames) / fps / len(keep)


def gif_bytes(frames: list[np.ndarray], duration_ms: float) -> bytes:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(duration_ms), loop=0
    )
    return buffer.getvalue()


def config_markdown(config: dict[str, Scalar]) -> str:
    rows = [
        f"| {key} | {'' if value is None else str(value).replace('|', '/')} |"
        for key, value in config.items()
    ]
    return "\n".join(["| key | value |", "| --- | --- |", *rows])


class TensorBoardSession:
    # a restarted watch writes a new event file into the same log directory, which TensorBoard reads as one run
    ident = None

    def __init__(self, writer, config: dict[str, Scalar]):
        self.writer = writer
        writer.add_text("config", config_markdown(config), 0)

    def log(self, record: RunRecord, step: int) -> None:
        for name, value in record.metrics.items():
            self.writer.add_scalar(name, value, step)
        for video in record.videos:
            self.add_video(video, step)
        self.writer.flush()

    def describe(self, step: int, fields: dict[str, Scalar]) -> None:
        self.writer.add_text("checkpoint", config_markdown(fields), step)
        self.writer.flush()

    def add_video(self, video: EpisodeVideo, step: int) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        frames, duration_ms = gif_frames(video.path)
        image = Summary.Image(
            height=frames[0].shape[0],
            width=frames[0].shape[1],
            colorspace=3,
            encoded_image_string=gif_bytes(frames, duration_ms),
        )
        summary = Summary(value=[Summary.Value(tag=video.tag, image=image)])
        self.writer.file_writer.add_summary(summary, step)
        self.writer.add_text(f"{video.tag}/caption", video.caption, step)

    def close(self) -> str:
        self.writer.close()
        return f"tensorboard: tensorboard --logdir {self.writer.logdir}"


class TensorBoardTracker:
    name = "tensorboard"

    def check(self, options: TrackerOptions) -> None:
        require("tensorboardX", self.name)

    def open(
        self,
        run_name: str,
        config: dict[str, Scalar],
        options: TrackerOptions,
        run_dir: Path,
        resume: str | None = None,
    ) -> TensorBoardSession:
        from tensorboardX import SummaryWriter

        return TensorBoardSession(SummaryWriter(logdir=str(log_dir(run_name, options, run_dir))), config)
