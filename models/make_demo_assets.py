"""Regenerate the demo shipped in onnx_snn/data: `python -m onnx_snn.models.make_demo_assets`.

Writes digits_mlp.onnx (zoo model "digits-mlp": MLP 64-64-10 on sklearn digits, legacy exporter,
input "x" [N, 1, 8, 8], output "logits") and digits_test.npz (x: test images float32 [N, 1, 8, 8],
y: int64 labels, x_calib: DEMO_CALIB_SIZE training images). Training is seeded, so reruns on the same
machine and torch version reproduce the files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import onnx_snn
from onnx_snn.models.files import atomic_path, save_npz
from onnx_snn.models.zoo import get_reference

DEMO_MODEL = "digits-mlp"
DEMO_CALIB_SIZE = 256
DEFAULT_OUT_DIR = Path(onnx_snn.__file__).resolve().parent / "data"


def make_demo_assets(out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> tuple[Path, Path]:
    """Train the demo model in a throwaway cache, write both files to `out_dir`, return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        ref = get_reference(DEMO_MODEL, cache_dir=cache, exporter="legacy")
        x_test, y_test = ref.load_test()
        x_calib = ref.load_calibration()[:DEMO_CALIB_SIZE]
        model_path = out_dir / "digits_mlp.onnx"
        with atomic_path(model_path) as tmp:
            shutil.copyfile(ref.onnx_path, tmp)
    data_path = save_npz(out_dir / "digits_test.npz", x=x_test, y=y_test, x_calib=np.ascontiguousarray(x_calib))
    return model_path, data_path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: optional --out-dir, prints each written file and its size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    for path in make_demo_assets(args.out_dir):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
