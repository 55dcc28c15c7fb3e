"""The SLURM recipe for Ray (deploy/slurm/evalkit_ray.sbatch) parses, and drives `make eval` with RAY set."""

import subprocess
from pathlib import Path

import pytest

# slow: bash checks the script
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "evalkit_ray.sbatch"


def test_slurm_script_is_valid_bash_and_runs_make_eval_on_ray():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert "#SBATCH --nodes=" in text
    assert '"$RAY_BIN" start --head' in text and '"$RAY_BIN" start --address="$ADDRESS"' in text
    assert 'make eval RAY="$ADDRESS" "$@"' in text
