"""``lossnet demo`` without ``../shared``: triplets from scikit-image's sample photographs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossnet.cli.demo import builtin_triplets

SRC = Path(__file__).resolve().parents[2] / "src"


def test_builtin_triplets_are_real_photos_with_two_distortions():
    trip = builtin_triplets()
    assert set(trip) == {"astronaut", "coffee"}
    for ref, p0, p1 in trip.values():
        assert ref.shape == p0.shape == p1.shape == (1, 3, 64, 64)
        assert all(0 <= float(t.min()) and float(t.max()) <= 1 for t in (ref, p0, p1))
        assert float(ref.std()) > 0.1  # a picture, not a flat field
        assert 0 < float((p0 - ref).abs().mean()) and 0 < float((p1 - ref).abs().mean())
    assert torch.equal(builtin_triplets()["coffee"][2], trip["coffee"][2])  # deterministic


@pytest.mark.slow
def test_demo_runs_without_shared(tmp_path, shared_weights_dir):
    """From a directory with no ../shared beside it; only the weights come from a folder (a user's
    machine downloads them)."""
    work = tmp_path / "somewhere" / "else"
    work.mkdir(parents=True)
    assert not (work.parent / "shared").exists()
    env = {**os.environ, "PYTHONPATH": str(SRC), "LOSSNET_WEIGHTS_DIR": str(shared_weights_dir), "OMP_NUM_THREADS": "2"}
    res = subprocess.run(
        [sys.executable, "-m", "lossnet", "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "scikit-image's sample photographs" in out and "astronaut" in out and "coffee" in out
    assert "lpips-alex" in out and "signatures:" in out and "w=imagenet:sha256:" in out
    # LPIPS-VGG ranks the mild blur closer than the noise on both photos
    rows = [line.split() for line in out.splitlines() if " lpips-vgg " in f" {line} "]
    assert len(rows) == 2 and all(r[-1] == "p0" for r in rows)
