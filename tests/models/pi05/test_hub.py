"""Hub download over real HTTP from a loopback server with the Hugging Face URL layout."""

import functools
import http.server
import json
import shutil
import socket
import threading

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05 import cli
from evalkit.models.pi05.checkpoint import load_checkpoint
from evalkit.models.pi05.hub import COMPLETE_MARKER, parse_remote, resolve_checkpoint
from evalkit.models.pi05.normalize import write_openpi_norm_stats
from tests.fixtures import pi05_fixture


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate: set[str] = set()  # paths whose body is cut short (Content-Length promises more)
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        if self.path in self.truncate:
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Handler,), {"truncate": set(), "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return cli.make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", "libero", seed=1)


def publish(src, root, repo, revision="main"):
    target = root / repo / "resolve" / revision
    shutil.copytree(src, target)
    return target


def test_download_then_offline_from_cache(server, tiny, tmp_path):
    endpoint, root, handler = server
    publish(tiny, root, "org/tiny")
    cache = tmp_path / "cache"
    path = resolve_checkpoint("org/tiny", cache=cache, endpoint=endpoint, progress=False)
    assert path == cache / "hub" / "org--tiny" / "main"
    assert (path / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [p.name for p in tiny.iterdir()] + [COMPLETE_MARKER]
    )
    assert load_checkpoint(path).fingerprint() == load_checkpoint(tiny).fingerprint()
    assert not list(path.rglob("*.tmp"))
    shutil.rmtree(root / "org")  # the server no longer has it: the cache must be enough
    handler.requests.clear()
    assert resolve_checkpoint("hf://org/tiny", cache=cache, endpoint=endpoint, progress=False) == path
    assert handler.requests == []


def test_env_overrides_url_base_and_revision(server, tiny, tmp_path, monkeypatch):
    endpoint, root, _ = server
    publish(tiny, root, "org/tiny", revision="v1")
    monkeypatch.setenv("EVALKIT_HUB_ENDPOINT", endpoint)
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "envcache"))
    path = resolve_checkpoint("org/tiny@v1", progress=False)
    assert path == tmp_path / "envcache" / "hub" / "org--tiny" / "v1"
    by_url = resolve_checkpoint(f"{endpoint}/org/tiny/resolve/v1", progress=False)
    assert by_url.parent == tmp_path / "envcache" / "urls"
    assert load_checkpoint(by_url).fingerprint() == load_checkpoint(path).fingerprint()


def test_openpi_layout_fetches_its_assets(server, tmp_path):
    endpoint, root, _ = server
    repo = root / "org" / "openpi" / "resolve" / "main"
    (repo / "assets" / "droid").mkdir(parents=True)
    shutil.copyfile(pi05_fixture() / "model.safetensors", repo / "model.safetensors")
    write_openpi_norm_stats(
        repo / "assets" / "droid" / "norm_stats.json",
        {"q01": [0.0], "q99": [1.0]},
        {"q01": [0.0], "q99": [1.0]},
    )
    path = resolve_checkpoint("org/openpi", cache=tmp_path / "c", endpoint=endpoint, progress=False)
    assert (path / "assets" / "droid" / "norm_stats.json").is_file()
    assert not (path / "assets" / "physical-intelligence").exists()


def test_unreachable_hub_names_the_cache_dir(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "cache"
    with pytest.raises(
        EvalkitError, match=r"cannot reach .*offline\? put the checkpoint files into .*org--gone"
    ):
        resolve_checkpoint("org/gone", cache=cache, endpoint=f"http://127.0.0.1:{port}", progress=False)


def test_missing_repo_and_truncated_download(server, tiny, tmp_path):
    endpoint, root, handler = server
    with pytest.raises(EvalkitError, match="has neither model.safetensors"):
        resolve_checkpoint("org/nothing", cache=tmp_path / "c", endpoint=endpoint, progress=False)
    publish(tiny, root, "org/cut")
    handler.truncate.add("/org/cut/resolve/main/model.safetensors")
    cache = tmp_path / "c2"
    with pytest.raises(EvalkitError, match="failed"):
        resolve_checkpoint("org/cut", cache=cache, endpoint=endpoint, progress=False)
    main = cache / "hub" / "org--cut" / "main"
    assert not (main / "model.safetensors").exists() and not (main / COMPLETE_MARKER).exists()
    assert not list(main.glob(".*.tmp"))


def test_local_paths_and_ids():
    assert parse_remote("not a hub id!") is None
    with pytest.raises(EvalkitError, match="invalid hub id"):
        parse_remote("org/name@..")
    with pytest.raises(EvalkitError, match="does not exist"):
        resolve_checkpoint("/definitely/not/here")
    with pytest.raises(EvalkitError, match="does not exist"):
        resolve_checkpoint("./a/b/c")


def test_lerobot_layout_fetches_processor_state_files(server, tmp_path):
    from safetensors.torch import load_file

    from tests.models.pi05.checkpoint.helpers import FIXTURE_CONFIG, lerobot_dir

    endpoint, root, _ = server
    src = lerobot_dir(tmp_path, load_file(str(pi05_fixture() / "model.safetensors")))
    publish(src, root, "lerobot/pi05_tiny")
    path = resolve_checkpoint("lerobot/pi05_tiny", cache=tmp_path / "c", endpoint=endpoint, progress=False)
    assert (path / "policy_postprocessor_step_1_unnormalizer_processor.safetensors").is_file()
    ckpt = load_checkpoint(path, model_config_file=FIXTURE_CONFIG)
    assert ckpt.layout == "lerobot"
    assert ckpt.fingerprint() == load_checkpoint(src, model_config_file=FIXTURE_CONFIG).fingerprint()

    evil = root / "lerobot" / "evil" / "resolve" / "main"
    shutil.copytree(src, evil)
    pipeline = json.loads((evil / "policy_preprocessor.json").read_text())
    pipeline["steps"][0]["state_file"] = "../../../../escape.safetensors"
    (evil / "policy_preprocessor.json").write_text(json.dumps(pipeline))
    with pytest.raises(EvalkitError, match="refusing to download suspicious file name"):
        resolve_checkpoint("lerobot/evil", cache=tmp_path / "c", endpoint=endpoint, progress=False)
