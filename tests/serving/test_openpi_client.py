"""Conformance with Physical Intelligence's own client (PyPI `openpi-client`) against `evalkit serve`.

openpi-client pins numpy<2 (and forgets to declare typing_extensions), so it gets its own venv at
`.venv-openpi-client/`, created on first use (~20 s, needs PyPI) and reused afterwards.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evalkit.core.policy import PolicyRequest
from evalkit.policies.simple import RandomPolicy
from evalkit.serving.server import ServerThread
from evalkit.wire.msgpack_numpy import packb
from tests.fakes import EchoPolicy
from tests.serving.wire_helpers import REPO, ServerProcess, local_server

# slow: a venv with openpi-client, evalkit serve in a subprocess
pytestmark = pytest.mark.slow

CLIENT_VENV = REPO / ".venv-openpi-client"
CLIENT_PACKAGES = ["openpi-client==0.1.2", "typing_extensions"]
SCRIPT = Path(__file__).with_name("openpi_client_script.py")


@pytest.fixture(scope="session")
def openpi_python() -> Path:
    python = CLIENT_VENV / "bin" / "python"
    marker = CLIENT_VENV / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CLIENT_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *CLIENT_PACKAGES],
            check=True,
            timeout=600,
        )
        marker.write_text(" ".join(CLIENT_PACKAGES) + "\n")
    check = subprocess.run(
        [str(python), "-c", "import numpy, openpi_client.websocket_client_policy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("1."), "openpi-client's venv should hold numpy<2 as the client pins"
    return python


@pytest.fixture(scope="module")
def client_run(openpi_python, tmp_path_factory) -> dict[str, np.ndarray]:
    """openpi's WebsocketClientPolicy against an in-process server (EchoPolicy) and `evalkit serve --policy random`."""
    out_path = tmp_path_factory.mktemp("openpi") / "out.npz"
    with (
        ServerThread(local_server(EchoPolicy())) as echo,
        ServerProcess("--policy", "random") as rand,
    ):
        run = subprocess.run(
            [str(openpi_python), str(SCRIPT), str(echo.port), str(rand.port), str(out_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    with np.load(out_path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_openpi_client_gets_in_process_actions(client_run):
    out = client_run
    assert str(out["echo_fingerprint"]) == "echo-v1"

    # Same actions as the policy called in process on the same observations; seed from __evalkit_seed__ if sent,
    # else the server's request counter (0, 1, ...).
    for i, seed in enumerate([1000, 1001, 0]):
        obs = {k.split("/", 1)[1]: out[k] for k in out if k.startswith(f"obs{i}/")}
        obs["prompt"] = str(obs["prompt"])
        want = EchoPolicy().infer([PolicyRequest(obs, "", seed, 7)])[0]
        np.testing.assert_array_equal(out[f"echo{i}"], want)
        assert out[f"echo{i}"].dtype == np.float32
    assert set(out["timing0"]) == {"infer_ms", "batch_size"}
    assert "prev_total_ms" in set(out["timing1"])

    # openpi's ActionChunkBroker steps through one chunk (rows 0..4) of the reply.
    assert out["broker"].shape == (5, 7)
    np.testing.assert_array_equal(out["broker"][0, :7], out["broker_obs_state"][:7].astype(np.float32))
    assert np.all(out["broker"][1:] != out["broker"][0])

    # A bad request reaches the client as openpi's "Error in inference server" with our reason.
    error = str(out["error"])
    assert error.startswith("Error in inference server:") and "missing key(s) observation/state" in error

    # `evalkit serve --policy random` answers the client's seedless requests with seeds 0, 1, 2.
    want = RandomPolicy(7).infer([PolicyRequest({}, "", s, 7) for s in range(3)])
    np.testing.assert_array_equal(out["random"], np.stack(want))


def test_openpi_encoder_bytes_equal_ours(client_run):
    """openpi's packb (run in the client venv) and ours produce identical bytes for every wire type."""
    sample = {
        "prompt": "pick",
        "observation/image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "observation/state": np.linspace(0, 1, 8, dtype=np.float32),
        "i8": np.array([-1, 2**40], dtype=np.int64),
        "f2": np.array([0.5], dtype=np.float16),
        "bool": np.array([True, False]),
        "scalar": np.float32(2.5),
        "empty": np.zeros((0, 2)),
        "zero_d": np.array(7, dtype=np.int32),
        "nested": {"t": np.arange(6, dtype=np.float64).reshape(2, 3).T},
    }
    assert client_run["openpi_bytes"].tobytes() == packb(sample)
