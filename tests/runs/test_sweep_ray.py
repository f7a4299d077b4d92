"""Ray executor set-up without a cluster: the runtime_env forwarded to tasks, fail-fast addresses."""

from __future__ import annotations

import os
import socket
import time

import pytest

from lossnet.errors import LossnetError
from lossnet.runs.executors import check_ray_address, ray_runtime_env


def test_runtime_env_forwards_weights_and_shared_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"LOSSNET_WEIGHTS_DIR": os.pathsep.join(["w1", "/abs/w2"]), "LOSSNET_SHARED": "shared", "HOME": "/root"}
    assert ray_runtime_env(env) == {
        "env_vars": {
            "LOSSNET_WEIGHTS_DIR": os.pathsep.join([str(tmp_path / "w1"), "/abs/w2"]),
            "LOSSNET_SHARED": str(tmp_path / "shared"),
        }
    }
    assert ray_runtime_env({"LOSSNET_WEIGHTS_DIR": "/w"}) == {"env_vars": {"LOSSNET_WEIGHTS_DIR": "/w"}}
    assert ray_runtime_env({"PATH": "/bin"}) == {}
    monkeypatch.setenv("LOSSNET_WEIGHTS_DIR", "/from/env")
    monkeypatch.delenv("LOSSNET_SHARED", raising=False)
    assert ray_runtime_env() == {"env_vars": {"LOSSNET_WEIGHTS_DIR": "/from/env"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_fails_fast():
    port = _free_port()  # nothing listens there once the socket is closed
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        t0 = time.monotonic()
        with pytest.raises(LossnetError, match=f"cannot reach the Ray cluster at --address {address}: .*refused"):
            check_ray_address(address)
        assert time.monotonic() - t0 < 3
    with pytest.raises(LossnetError, match="expected auto or HOST:PORT"):
        check_ray_address("localhost")
    check_ray_address(None)
    check_ray_address("auto")


def test_ray_executor_with_unreachable_address_fails_fast():
    pytest.importorskip("ray")
    from lossnet.runs.executors import RayExecutor

    t0 = time.monotonic()
    with pytest.raises(LossnetError, match="cannot reach the Ray cluster"):
        RayExecutor(address=f"127.0.0.1:{_free_port()}")
    assert time.monotonic() - t0 < 10


def test_sweep_with_unreachable_ray_touches_no_run(tmp_path):
    pytest.importorskip("ray")
    import fake_bench

    from lossnet.runs import ResultsStore, run_sweep
    from lossnet.runs.identity import run_key
    from lossnet.runs.plan import PlannedRun

    config = fake_bench.resolve_config({"net": "alexnet", "layer": "E"})
    run = PlannedRun(run_key(config), "fake_bench", config)
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(LossnetError, match="cannot reach the Ray cluster"):
            run_sweep(
                [run],
                store,
                tmp_path / "runs",
                executor="ray",
                address=f"127.0.0.1:{_free_port()}",
                progress=False,
                log=None,
            )
        assert store.status(run.key) is None  # no row at all (issue #32: no 'queued' rows left behind)
