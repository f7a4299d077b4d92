"""Convert the calibrated preset weights of the reference wheels into the safetensors files that
ship inside lossnet (``src/lossnet/data/presets/``), so the LPIPS and DISTS presets work in a
core-only install (no ``lpips`` / ``dists-pytorch`` needed at run time).

    pip install lpips==0.1.4 dists-pytorch==0.1
    python scripts/convert_presets.py            # writes src/lossnet/data/presets/*.safetensors

Sources (read with ``torch.load(..., weights_only=True)``; tensors copied unchanged: same keys,
shapes, dtype and values):

- ``lpips/weights/v0.1/{alex,vgg,squeeze}.pth`` of the ``lpips`` wheel (BSD-2-Clause, Zhang et al.)
  -> ``lpips-v0.1-{alex,vgg,squeeze}.safetensors`` (keys ``lin<k>.model.1.weight``, ``(1, C, 1, 1)``);
- ``DISTS_pytorch/weights.pt`` of the ``dists-pytorch`` wheel (MIT, Keyan Ding)
  -> ``dists-alpha-beta.safetensors`` (keys ``alpha``, ``beta``, ``(1, 1475, 1, 1)``).

Each file's metadata names the source package, its version, the file inside it, the source
file's sha256 and the licence; the notices are in ``src/lossnet/data/presets/LICENSES.md``.
``tests/test_presets_shipped.py`` checks the shipped tensors equal the wheels', element for element.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from importlib.metadata import version
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "lossnet" / "data" / "presets"

#: (package import name, distribution name, file inside the package, output name, licence)
SOURCES = [
    ("lpips", "lpips", "weights/v0.1/alex.pth", "lpips-v0.1-alex.safetensors", "BSD-2-Clause"),
    ("lpips", "lpips", "weights/v0.1/vgg.pth", "lpips-v0.1-vgg.safetensors", "BSD-2-Clause"),
    ("lpips", "lpips", "weights/v0.1/squeeze.pth", "lpips-v0.1-squeeze.safetensors", "BSD-2-Clause"),
    ("DISTS_pytorch", "DISTS-pytorch", "weights.pt", "dists-alpha-beta.safetensors", "MIT"),
]


def source_path(package: str, inner: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"convert_presets: install {package!r} first (see this script's docstring)")
    return Path(list(spec.submodule_search_locations)[0]) / inner


def main() -> int:
    import torch
    from safetensors.torch import save_file

    OUT.mkdir(parents=True, exist_ok=True)
    for package, dist, inner, name, licence in SOURCES:
        src = source_path(package, inner)
        state = torch.load(src, map_location="cpu", weights_only=True)
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        meta = {
            "source_package": dist,
            "source_version": version(dist),
            "source_file": f"{package}/{inner}",
            "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
            "license": licence,
        }
        save_file(tensors, str(OUT / name), metadata=meta)
        print(f"wrote {OUT / name}: {', '.join(f'{k} {tuple(v.shape)}' for k, v in tensors.items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
