"""Episode videos: mp4 through imageio, at the control rate, upright, with the task and outcome overlaid.

A video never fails its episode. Any error while writing (disk full, a file name the file system refuses, ffmpeg
dying) drops the video: the partial file is removed, nothing gets a final name, and `EpisodeVideo.failure` says
why, for the episode row (video NULL, the reason in its `error` column, the outcome unchanged). ffmpeg writes the
mp4 index (`moov`) last and imageio does not check ffmpeg's exit status, so a finished file is checked: synced to
disk, and its top-level boxes must tile the file and include `moov` and `mdat` (ISO/IEC 14496-12, section 4.2).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evalkit.paths import inside, safe_component

OUTCOME_HOLD_S = 1.0  # the last frame is held this long with the outcome banner
FAILURE_PREFIX = "video not saved: "


def video_name(suite: str, task_id: int, init_state: int, seed: int, task: str, success: bool) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", task.lower()).strip("_")[:80]
    outcome = "success" if success else "failure"
    return f"{safe_component(suite)}/task{task_id:02d}_init{init_state:03d}_seed{seed}_{outcome}_{slug}.mp4"


def caption_font_px(height: int, width: int) -> int:
    """Caption size: readable when the video is shown as a ~420 px wide thumbnail (wide DROID frames shrink most)."""
    return max(13, height // 14, width // 40)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, max_lines: int = 3) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], " ".join(lines[max_lines - 1 :])]
        while len(lines[-1]) > 1 and draw.textlength(lines[-1] + "…", font=font) > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] = lines[-1].rstrip() + "…"
    return lines


def _banner(frame: np.ndarray, text: str, color: tuple[int, int, int]) -> np.ndarray:
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = caption_font_px(*frame.shape[:2])
    font = ImageFont.load_default(size=size)
    lines = _wrap(draw, text, font, frame.shape[1] - 8)
    line_h = round(size * 1.2)
    draw.rectangle([0, 0, frame.shape[1], line_h * len(lines) + 6], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * line_h), line, fill=color, font=font)
    return np.asarray(image)


def check_mp4(path: Path) -> None:
    """Raise OSError unless `path` is a complete mp4: top-level boxes that tile the file, with `moov` and `mdat`."""
    size = path.stat().st_size
    seen: set[bytes] = set()
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                raise OSError(f"truncated mp4 box header at byte {offset}")
            box_size, box_type = struct.unpack(">I4s", header[:8])
            if box_size == 1:
                if len(header) < 16:
                    raise OSError(f"truncated mp4 box header at byte {offset}")
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:  # extends to the end of the file
                box_size = size - offset
            if box_size < 8 or offset + box_size > size:
                raise OSError(f"mp4 box {box_type!r} at byte {offset} runs past the end of the file")
            seen.add(box_type)
            offset += box_size
    missing = {b"moov", b"mdat"} - seen
    if missing:
        raise OSError(f"incomplete mp4: no {', '.join(sorted(m.decode() for m in missing))} box")


class EpisodeVideo:
    """Streams frames to a temporary mp4 so that long episodes never sit in memory; `finish` names it by outcome."""

    def __init__(self, run_dir: Path, tmp_name: str, task: str, fps: float):
        self.run_dir = Path(run_dir)
        self.tmp_path = self.run_dir / "videos" / ".partial" / f"{safe_component(tmp_name)}.mp4"
        self.task = task
        self.fps = fps
        self.failure: str | None = None  # why the video was dropped; None while it is fine
        self._writer = None
        self._last: np.ndarray | None = None

    def _fail(self, exc: BaseException) -> None:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        self.failure = f"{FAILURE_PREFIX}{type(exc).__name__}: {first_line}"[:300]
        self.discard()

    def add(self, frame: np.ndarray) -> None:
        if self.failure is not None:
            return
        try:
            import imageio.v2 as imageio

            if self._writer is None:
                self.tmp_path.parent.mkdir(parents=True, exist_ok=True)
                # macro_block_size=1 keeps odd sizes (e.g. 180x320 is fine, 224 too) without rescaling.
                self._writer = imageio.get_writer(
                    self.tmp_path, fps=self.fps, codec="libx264", macro_block_size=1
                )
            self._last = _banner(frame, self.task, (255, 255, 255))
            self._writer.append_data(self._last)
        except Exception as exc:  # a video never fails its episode
            self._fail(exc)

    def finish(self, relative_name: str, success: bool) -> str | None:
        """Close and check the file, move it to `videos/<relative_name>`; returns the path relative to the run dir,
        or None (and `failure` says why) if the video could not be completed."""
        if self._writer is None or self.failure is not None:
            return None
        outcome = "SUCCESS" if success else "FAILURE"
        color = (80, 255, 80) if success else (255, 80, 80)
        try:
            held = _banner(self._last, f"{outcome}: {self.task}", color)
            for _ in range(max(1, round(self.fps * OUTCOME_HOLD_S))):
                self._writer.append_data(held)
            writer, self._writer = self._writer, None
            writer.close()
            with open(self.tmp_path, "rb+") as f:
                os.fsync(f.fileno())  # a full disk shows here, not at a later read
            check_mp4(self.tmp_path)
            videos = self.run_dir / "videos"
            final = inside(videos, relative_name)
            final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp_path.replace(final)
            return str(final.relative_to(self.run_dir.resolve()))
        except Exception as exc:  # a video never fails its episode
            self._fail(exc)
            return None

    def discard(self) -> None:
        """Drop the video and its partial file; never raises."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # already failing: the partial file goes either way
                writer.close()
        with contextlib.suppress(OSError):
            self.tmp_path.unlink(missing_ok=True)
