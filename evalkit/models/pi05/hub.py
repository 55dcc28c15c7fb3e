"""Resolve `--checkpoint`: a local path is used as is; a hub id is downloaded once into the cache.

Accepted forms: a local directory or file; `owner/name[@revision]` or `hf://owner/name[@revision]` (Hugging Face
style, `{endpoint}/{repo}/resolve/{revision}/{filename}`, endpoint `$EVALKIT_HUB_ENDPOINT`, default
https://huggingface.co); an `http(s)://` URL base whose files are `{base}/{filename}`.

Files land in evalkit's cache root (`cache.py`: `$EVALKIT_CACHE`, default ~/.cache/evalkit) under `hub/<owner>--<name>/<revision>/`, each written to
a temporary file and renamed when complete; a `.evalkit-complete.json` marker lists the files once the whole
checkpoint is there, after which no network is used. Which files are fetched depends on the layout the
checkpoint's `config.json` declares (see the `checkpoint` package); only safetensors, json and the tokenizer are fetched.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from evalkit.core.cache import cache_root
from evalkit.core.errors import EvalkitError

DEFAULT_ENDPOINT = "https://huggingface.co"
COMPLETE_MARKER = ".evalkit-complete.json"
MAX_JSON_BYTES = 64 << 20
TIMEOUT_S = 60.0
OPENPI_ASSET_IDS = ("physical-intelligence/libero", "droid")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class RemoteCheckpoint:
    spec: str  # what the user wrote
    base_url: str  # files are at f"{base_url}/{filename}"
    cache_dir: Path

    def url(self, filename: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(filename)}"


def parse_remote(
    spec: str, cache: Path | None = None, endpoint: str | None = None
) -> RemoteCheckpoint | None:
    """A hub id or URL base → where to download from and where to cache; None if `spec` is neither."""
    cache = cache or cache_root()
    if spec.startswith(("http://", "https://")):
        base = spec.rstrip("/")
        tail = re.sub(r"[^\w.-]", "_", base.rsplit("/", 1)[-1])[:64]
        digest = hashlib.sha256(base.encode()).hexdigest()[:16]
        return RemoteCheckpoint(spec, base, cache / "urls" / f"{tail}-{digest}")
    repo = spec[len("hf://") :] if spec.startswith("hf://") else spec
    if not _HUB_ID.match(repo):
        return None
    repo, _, revision = repo.partition("@")
    revision = revision or "main"
    if any(set(part) <= {"."} for part in (*repo.split("/"), *revision.split("/"))):
        raise EvalkitError(f"invalid hub id {spec!r}")
    endpoint = (endpoint or os.environ.get("EVALKIT_HUB_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    base = f"{endpoint}/{repo}/resolve/{urllib.parse.quote(revision, safe='')}"
    owner, name = repo.split("/")
    safe_revision = re.sub(r"[^\w.-]", "_", revision)
    return RemoteCheckpoint(spec, base, cache / "hub" / f"{owner}--{name}" / safe_revision)


def resolve_checkpoint(
    id_or_path: str, cache: Path | None = None, endpoint: str | None = None, progress: bool = True
) -> Path:
    """Local path → itself; hub id / URL → the cached download (fetched now if not complete yet)."""
    local = Path(id_or_path).expanduser()
    if local.exists():
        return local
    remote = None if _looks_local(id_or_path) else parse_remote(id_or_path, cache, endpoint)
    if remote is None:
        raise EvalkitError(f"checkpoint {id_or_path} does not exist (not a local path, hub id or URL)")
    if (remote.cache_dir / COMPLETE_MARKER).is_file():
        return remote.cache_dir
    Downloader(remote, progress).download_checkpoint()
    return remote.cache_dir


def _looks_local(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or (spec.count("/") > 1 and "://" not in spec)


class Downloader:
    def __init__(self, remote: RemoteCheckpoint, progress: bool = True):
        self.remote = remote
        self.progress = progress
        self.fetched: list[str] = []

    # --------------------------------------------------------------------------------------------- one file
    def fetch(self, filename: str, required: bool = True) -> Path | None:
        """Download `filename` unless cached; None if it does not exist remotely and is optional."""
        target = self.remote.cache_dir / filename
        if target.is_file():
            self.fetched.append(filename)
            return target
        url = self.remote.url(filename)
        try:
            response = urllib.request.urlopen(urllib.request.Request(url), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and not required:
                return None
            if exc.code in (401, 403):
                raise EvalkitError(
                    f"access denied to {url} (HTTP {exc.code}: a gated, private or nonexistent repo?); "
                    f"download the files by hand into {self.remote.cache_dir} or pass a local directory"
                ) from exc
            raise EvalkitError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        except OSError as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", exc)
            raise EvalkitError(
                f"cannot reach {url} ({reason}); offline? put the checkpoint files into {self.remote.cache_dir} "
                f"(and an empty {COMPLETE_MARKER}) or pass a local directory"
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with response, open(tmp, "wb") as out:
                self._copy(response, out, filename)
            os.replace(tmp, target)
        except OSError as exc:
            raise EvalkitError(f"download of {url} failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        self.fetched.append(filename)
        return target

    def _copy(self, response: http.client.HTTPResponse, out: BinaryIO, filename: str) -> None:
        from tqdm import tqdm

        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        written = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=filename, disable=not self.progress, file=sys.stderr
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                written += len(block)
                bar.update(len(block))
        if total is not None and written != total:
            raise OSError(f"got {written} of {total} bytes")

    def fetch_json(self, filename: str, required: bool = True) -> dict | None:
        path = self.fetch(filename, required)
        if path is None:
            return None
        if path.stat().st_size > MAX_JSON_BYTES:
            raise EvalkitError(f"{self.remote.url(filename)} is larger than {MAX_JSON_BYTES} bytes")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            path.unlink(missing_ok=True)
            raise EvalkitError(f"{self.remote.url(filename)} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EvalkitError(f"{self.remote.url(filename)}: expected a JSON object")
        return data

    # ------------------------------------------------------------------------------------------- checkpoint
    def download_checkpoint(self) -> Path:
        from evalkit.models.pi05.checkpoint.io import WEIGHTS_FILE, WEIGHTS_INDEX
        from evalkit.models.pi05.checkpoint.shapes import EVALKIT_FORMAT
        from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME

        config = self.fetch_json("config.json", required=False) or {}
        if self.fetch(WEIGHTS_FILE, required=False) is None:
            index = self.fetch_json(WEIGHTS_INDEX, required=False)
            if index is None:
                raise EvalkitError(
                    f"{self.remote.spec} is no local directory, and {self.remote.base_url} has neither "
                    f"{WEIGHTS_FILE} nor {WEIGHTS_INDEX}"
                )
            for shard in sorted(set(index.get("weight_map", {}).values())):
                self.fetch(_safe_name(shard, ".safetensors"))
        if config.get("format") == EVALKIT_FORMAT:
            stats_file = config.get("normalization", {}).get("stats_file")
            if not stats_file:
                raise EvalkitError(f"{self.remote.spec}: config.json names no norm stats file")
            self.fetch(_safe_name(stats_file, ".json"))
        elif config.get("type") == "pi05":
            for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
                pipeline = self.fetch_json(name) or {}
                for step in pipeline.get("steps", []):
                    if step.get("state_file"):
                        self.fetch(_safe_name(step["state_file"], ".safetensors"))
        else:
            found = [self.fetch(f"assets/{a}/norm_stats.json", required=False) for a in OPENPI_ASSET_IDS]
            if not any(found):
                raise EvalkitError(
                    f"{self.remote.spec} has no norm stats (looked for assets/<id>/norm_stats.json with id in "
                    f"{', '.join(OPENPI_ASSET_IDS)})"
                )
        self.fetch(TOKENIZER_FILENAME, required=False)
        marker = self.remote.cache_dir / COMPLETE_MARKER
        marker.write_text(
            json.dumps({"source": self.remote.base_url, "files": sorted(self.fetched)}, indent=2)
        )
        return self.remote.cache_dir


def _safe_name(name: str, suffix: str) -> str:
    """A file name taken from remote JSON: relative, no `..`, expected suffix (never a pickle)."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or not name.endswith(suffix):
        raise EvalkitError(
            f"refusing to download suspicious file name {name!r} (expected a relative *{suffix})"
        )
    return name
