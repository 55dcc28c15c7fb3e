"""Episode videos: mp4 through imageio, at the control rate, upright, with the task and outcome overlaid."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUTCOME_HOLD_S = 1.0  # the last frame is held this long with the outcome banner


def video_name(suite: str, task_id: int, init_state: int, seed: int, task: str, success: bool) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", task.lower()).strip("_")[:80]
    outcome = "success" if success else "failure"
    return f"{suite}/task{task_id:02d}_init{init_state:03d}_seed{seed}_{outcome}_{slug}.mp4"


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


class EpisodeVideo:
    """Streams frames to a temporary mp4 so that long episodes never sit in memory; `finish` names it by outcome."""

    def __init__(self, run_dir: Path, tmp_name: str, task: str, fps: float):
        self.run_dir = Path(run_dir)
        self.tmp_path = self.run_dir / "videos" / ".partial" / f"{tmp_name}.mp4"
        self.tmp_path.parent.mkdir(parents=True, exist_ok=True)
        self.task = task
        self.fps = fps
        self._writer = None
        self._last: np.ndarray | None = None

    def add(self, frame: np.ndarray) -> None:
        import imageio.v2 as imageio

        if self._writer is None:
            # macro_block_size=1 keeps odd sizes (e.g. 180x320 is fine, 224 too) without rescaling.
            self._writer = imageio.get_writer(
                self.tmp_path, fps=self.fps, codec="libx264", macro_block_size=1
            )
        self._last = _banner(frame, self.task, (255, 255, 255))
        self._writer.append_data(self._last)

    def finish(self, relative_name: str, success: bool) -> str | None:
        """Close the file, move it to `videos/<relative_name>`; returns the path relative to the run dir."""
        if self._writer is None:
            return None
        outcome = "SUCCESS" if success else "FAILURE"
        color = (80, 255, 80) if success else (255, 80, 80)
        held = _banner(self._last, f"{outcome}: {self.task}", color)
        for _ in range(max(1, round(self.fps * OUTCOME_HOLD_S))):
            self._writer.append_data(held)
        self._writer.close()
        final = self.run_dir / "videos" / relative_name
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path.replace(final)
        return str(final.relative_to(self.run_dir))

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.tmp_path.unlink(missing_ok=True)
