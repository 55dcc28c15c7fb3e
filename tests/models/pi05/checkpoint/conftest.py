"""The golden fixture's openpi PyTorch weights, shared by the checkpoint tests."""

import pytest
from safetensors.torch import load_file

from tests.models.pi05.checkpoint.helpers import FIXTURE


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURE / "model.safetensors"))
