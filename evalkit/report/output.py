"""Writing report outputs: the output directory, the files (a full disk or a read-only file system is one line,
never a traceback), and HTML pages rendered from the package's templates with autoescaping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalkit.core.errors import EvalkitError


def make_out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalkitError(f"cannot create report directory {path}: {exc.strerror or exc}") from exc
    return path


def write_files(out: Path, writers: dict[str, Callable[[Path], Any]]) -> list[Path]:
    """Call each writer with its path under `out`; an OS error (disk full, read-only) is one EvalkitError."""
    files = []
    for name, write in writers.items():
        path = out / name
        try:
            write(path)
        except OSError as exc:
            raise EvalkitError(f"cannot write {path}: {exc.strerror or exc}") from exc
        files.append(path)
    return files


def text_writer(text: str) -> Callable[[Path], Any]:
    return lambda path: path.write_text(text)


def render_page(template: str, **context: Any) -> str:
    """An HTML page from `evalkit/report/templates`; every value is escaped unless a template marks it safe."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evalkit.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(template).render(**context)
