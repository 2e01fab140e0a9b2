"""The seed config's weights, bit for bit: a digest recorded before the training loop and the
component declarations were rebuilt (issue 13), so a refactor that changes any rounding fails.

Pinned to one process and one BLAS thread, whose sums do not depend on the machine's cores.
The products' rounding depends on OpenBLAS's kernel for the processor, so there is a digest
per kernel (each recorded with ``OPENBLAS_CORETYPE=<kernel>``)."""

import hashlib

import h5py
import pytest
from click.testing import CliRunner

from mlpcli.cli import main

# recorded at 23d88ef (before issue 13) with the command of ``trained_digest``
SEED_DIGESTS = {
    "Haswell": "54f7b5c1406fa93f0709f5cca2da0f7ba28fca6f982c3428c4ede66fc9b22cf1",
    "Sandybridge": "c1706b0c12c3b62432ae517373f5f6f0d62d26d62635d18f6b35f9942fb64eca",
    "Katmai": "bbad7fbb6fcf1936b6a9d45e601bb72f104b96db9b5eab4fe99f75189e7e6868",
    # recorded at issue 16 (the three above still matched then), for machines that run the
    # SkylakeX kernel when OPENBLAS_CORETYPE is not set
    "SkylakeX": "0595c033885b5b5c72aa31af33d9ae3d86fef8a1ee1c8326fa8082fc3d4ed80c",
}


def blas_kernel():
    import numpy  # noqa: F401 - loads OpenBLAS, which threadpoolctl then describes
    from threadpoolctl import threadpool_info

    return next((i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"), None)


def weights_digest(path):
    digest = hashlib.sha256()
    with h5py.File(path) as f:
        weights = f["model_weights"]
        for layer in weights.attrs["layer_names"]:
            group = weights[layer]
            for name in group.attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                digest.update(name.encode())
                digest.update(group[name][()].tobytes())
    return digest.hexdigest()


def trained_digest(run_dir):
    result = CliRunner().invoke(main, ["train", "configs/mnist.yaml", "--run-dir", str(run_dir), "-q", "--no-plots",
                                       "--set", "data.max_train_samples=3000", "--set", "training.epochs=2",
                                       "--set", "training.processes=1", "--set", "training.threads=1"])
    assert result.exit_code == 0, result.output
    return weights_digest(run_dir / "model.h5")


def test_the_seed_config_trains_the_same_weights_bit_for_bit(tmp_path):
    kernel = blas_kernel()
    if kernel not in SEED_DIGESTS:
        pytest.skip(f"no digest recorded for OpenBLAS's {kernel} kernel (recorded: {', '.join(SEED_DIGESTS)})")
    assert trained_digest(tmp_path / "run") == SEED_DIGESTS[kernel]
