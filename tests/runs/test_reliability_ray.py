"""Ray executor checks of issue #32: a run size no node has fails fast (M9), a loopback address to a
head started with ``ray start --head`` says what to use instead, and a failed set-up leaves no
``queued`` rows (the Ray item and the last round's unreachable-address item)."""

from __future__ import annotations

import socket
import time

import pytest

from lossnet.errors import LossnetError
from lossnet.runs.executors import check_fits, check_ray_address


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_m9_gpus_per_run_on_a_cluster_without_gpus_is_refused():
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0, "memory": 1e9}}]
    with pytest.raises(
        LossnetError,
        match=r"--gpus-per-run 1: no node of the Ray cluster has 1 GPU\(s\) \(largest node: 0, cluster: 0\)",
    ):
        check_fits(nodes, 1, 1)
    with pytest.raises(LossnetError, match=r"--cpus-per-run 4: .*largest node: 2, cluster: 4"):
        check_fits(nodes + [{"Alive": True, "Resources": {"CPU": 2.0}}], 4, 0)
    check_fits(nodes + [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}], 4, 1)  # one node fits both
    with pytest.raises(LossnetError, match="GPU"):  # a dead node's GPU does not count
        check_fits(nodes + [{"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}], 1, 1)


def test_ray_loopback_address_suggests_the_node_address_and_auto():
    with pytest.raises(LossnetError, match=r"listens on this node's IP address, not on 127.0.0.1.*--address auto"):
        check_ray_address(f"127.0.0.1:{_free_port()}", timeout=1)


@pytest.mark.slow
def test_m9_sweep_with_gpus_per_run_on_a_cpu_only_ray_fails_fast_and_leaves_no_rows(tmp_path):
    pytest.importorskip("ray")
    import fake_bench

    from lossnet.runs import ResultsStore, run_sweep
    from lossnet.runs.identity import run_key
    from lossnet.runs.plan import PlannedRun

    config = fake_bench.resolve_config({"net": "alexnet", "layer": "E"})
    run = PlannedRun(run_key(config), "fake_bench", config)
    t0 = time.monotonic()
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(LossnetError, match="--gpus-per-run 1: no node of the Ray cluster has 1 GPU"):
            run_sweep(
                [run], store, tmp_path / "runs", executor="ray", num_cpus=1, gpus_per_run=1, progress=False, log=None
            )
        assert store.status(run.key) is None
    assert time.monotonic() - t0 < 120  # was: forever
    import ray

    assert not ray.is_initialized()  # the local instance it started was shut down
