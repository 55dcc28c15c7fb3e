"""Episode videos: a video that cannot be finished is dropped (no file gets its final name) and says why; it never
fails its episode. Disk full is real: a 1 MB tmpfs (needs root), or RLIMIT_FSIZE in a subprocess."""

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from evalkit.paths import MAX_COMPONENT
from evalkit.video import FAILURE_PREFIX, EpisodeVideo, check_mp4, video_name

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 2500  # 64x64 frames: ~110 kB of mdat, then the moov written last (the trailer)


def frames(n: int = N_FRAMES):
    for i in range(n):
        f = np.zeros((64, 64, 3), np.uint8)
        f[:, :, 0] = (i * 3) % 256
        f[10:20, i % 40 : i % 40 + 10] = 255
        yield f


# finishing a video runs ffmpeg (a subprocess): the tests that finish one are marked slow
def write_video(run_dir: Path, n: int = N_FRAMES) -> EpisodeVideo:
    video = EpisodeVideo(run_dir, "libero_spatial_0_0_7", "pick up the bowl", 10)
    for f in frames(n):
        video.add(f)
    return video


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_finished_video_is_complete_and_named(tmp_path):
    video = write_video(tmp_path, 30)
    rel = video.finish("libero_spatial/task00_x.mp4", success=True)
    assert rel == "videos/libero_spatial/task00_x.mp4" and video.failure is None
    check_mp4(tmp_path / rel)
    assert iio.imread(tmp_path / rel).shape[0] == 30 + 10  # + 1 s outcome hold at 10 fps
    assert files_under(tmp_path / "videos" / ".partial") == []


@pytest.mark.slow
def test_check_mp4_refuses_truncated_files(tmp_path):
    video = write_video(tmp_path, 30)
    good = tmp_path / video.finish("s/a.mp4", success=False)
    data = good.read_bytes()
    bad = tmp_path / "bad.mp4"
    for cut in (8, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(OSError):
            check_mp4(bad)
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(OSError):
        check_mp4(bad)


@contextlib.contextmanager
def small_disk(path: Path, free_bytes: int):
    """A 1 MB tmpfs at `path` with a filler file leaving about `free_bytes` free; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        st = os.statvfs(path)
        (path / ".filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - free_bytes))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("free_kb", [72, 40, 4])
def test_disk_full_drops_the_video_and_says_why(tmp_path, free_kb):
    """Issue 10: ffmpeg failed writing the trailer on a full disk, yet an unreadable mp4 got its final name.

    72 kB free: the mdat (~65 kB) fits and the moov (~11 kB) does not, exactly the trailer failure; 40 kB and 4 kB
    fail earlier. The video is dropped either way; nothing is left under videos/.
    """
    run = tmp_path / "run"
    with small_disk(run, free_kb * 1024):
        video = write_video(run)
        rel = video.finish(video_name("libero_spatial", 0, 0, 7, "pick up the bowl", True), success=True)
        assert rel is None
        assert video.failure.startswith(FAILURE_PREFIX) and "\n" not in video.failure
        assert files_under(run / "videos") == []


@pytest.mark.slow
def test_file_size_limit_kills_ffmpeg_and_the_video_is_dropped(tmp_path):
    """The same without root: RLIMIT_FSIZE (inherited by ffmpeg) stops the file at 48 kB."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))
        sys.path.insert(0, {str(REPO)!r})
        from tests.test_video import write_video
        video = write_video(Path({str(tmp_path)!r}))
        print(video.finish("s/x.mp4", success=False))
        print(video.failure)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rel, failure = proc.stdout.strip().splitlines()[-2:]
    assert rel == "None" and failure.startswith(FAILURE_PREFIX)
    assert files_under(tmp_path / "videos") == []


def test_unwritable_video_directory_never_raises(tmp_path):
    (tmp_path / "videos").write_text("a file where the directory should be")
    video = write_video(tmp_path, 5)
    assert video.finish("s/x.mp4", success=True) is None
    assert video.failure.startswith(FAILURE_PREFIX + "FileExistsError") or "NotADirectory" in video.failure


@pytest.mark.slow
def test_hostile_suite_names_give_a_bounded_name_inside_videos(tmp_path):
    for suite in ("../../../x", "s" * 300, "/etc"):
        name = video_name(suite, 3, 12, 2**63 - 1, "put " * 100, False)
        assert all(len(part) <= 255 for part in name.split("/")) and len(name.split("/")[0]) <= MAX_COMPONENT
        video = write_video(tmp_path, 5)
        rel = video.finish(name, success=False)
        assert rel is not None and (tmp_path / rel).resolve().is_relative_to((tmp_path / "videos").resolve())
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.slow
def test_a_name_outside_the_video_root_is_refused_not_written(tmp_path):
    run = tmp_path / "run"
    video = write_video(run, 5)
    assert video.finish("../../escaped.mp4", success=True) is None
    assert "outside" in video.failure and not (tmp_path / "escaped.mp4").exists()
    assert files_under(run / "videos") == []
