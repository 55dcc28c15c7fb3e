"""Run by the openpi-client venv's interpreter (numpy<2, PyPI `openpi-client`), never imported by pytest.

usage: python openpi_client_script.py ECHO_PORT RANDOM_PORT OUT.npz
"""

import sys

import numpy as np
from openpi_client import msgpack_numpy
from openpi_client.action_chunk_broker import ActionChunkBroker
from openpi_client.websocket_client_policy import WebsocketClientPolicy

echo_port, random_port, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
out = {}


def obs_for(i):
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),  # float64, as LIBERO's example sends
        "prompt": f"task number {i}",
    }


echo = WebsocketClientPolicy(host="127.0.0.1", port=echo_port)
out["echo_fingerprint"] = np.array(echo.get_server_metadata()["fingerprint"])
for i in range(3):
    obs = obs_for(i)
    for key, value in obs.items():
        out[f"obs{i}/{key}"] = np.asarray(value)
    if i < 2:
        obs["__evalkit_seed__"] = 1000 + i  # evalkit's seed field, passed through like any other key
    reply = echo.infer(obs)
    out[f"echo{i}"] = reply["actions"]
    out[f"timing{i}"] = np.array(sorted(reply["server_timing"]) + sorted(reply["policy_timing"]))

broker = ActionChunkBroker(echo, action_horizon=5)
obs = obs_for(9)
out["broker_obs_state"] = obs["observation/state"]
out["broker_obs_image_sum"] = np.array(int(obs["observation/image"].astype(np.int64).sum()))
out["broker"] = np.stack([broker.infer(obs)["actions"] for _ in range(5)])

try:
    echo.infer({"prompt": "no state, no images"})
    out["error"] = np.array("no error")
except RuntimeError as exc:
    out["error"] = np.array(str(exc))

rand = WebsocketClientPolicy(host="127.0.0.1", port=random_port)
out["random"] = np.stack([rand.infer(obs_for(100 + i))["actions"] for i in range(3)])

# openpi's encoder on a message with every wire type; compared byte for byte with evalkit's.
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
out["openpi_bytes"] = np.frombuffer(msgpack_numpy.packb(sample), dtype=np.uint8)
np.savez(out_path, **out)
