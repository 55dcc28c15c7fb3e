"""Model dims inferred from tensor shapes."""

from evalkit.models.pi05.checkpoint import (
    NAMED_CONFIGS,
    expected_shapes,
    infer_dims,
)
from evalkit.models.pi05.config import Pi05Config


def test_full_size_dims_are_inferred_from_shapes():
    full = Pi05Config.full(action_horizon=10, discrete_state_input=False)
    assert infer_dims(expected_shapes(full), NAMED_CONFIGS["pi05_libero"]) == full
    droid = Pi05Config.full(action_horizon=15, discrete_state_input=True)
    assert infer_dims(expected_shapes(droid), NAMED_CONFIGS["pi05_droid"]) == droid
