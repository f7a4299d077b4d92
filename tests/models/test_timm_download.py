"""``net="timm:<name>"`` with ``weights="imagenet"`` downloading timm's pretrained weights (issue #28).

No real download: two loopback servers stand in for the Hugging Face Hub and its file CDN, speaking the
protocol ``huggingface_hub`` (``hf_hub_download``) uses for a plain-HTTP (non-Xet) file:

- ``HEAD {endpoint}/{repo}/resolve/{revision}/{file}`` on the Hub answers ``302`` with ``Location`` (the
  CDN, another origin), ``X-Repo-Commit`` (the commit hash), ``X-Linked-Etag`` (the file's sha256) and
  ``X-Linked-Size``, as the real Hub does for an LFS file; no ``X-Xet-Hash`` header, so ``huggingface_hub``
  takes its plain HTTP path even with ``hf_xet`` installed (``get_hf_file_metadata`` /
  ``parse_xet_file_data_from_response``). A missing file is ``404`` with ``X-Error-Code: EntryNotFound``,
  an unknown repo ``401`` with ``X-Error-Code: RepoNotFound`` (the Hub's codes).
- ``GET`` of the CDN URL sends the bytes (the project's :class:`LoopbackServer`).

The served file is a safetensors state dict of timm's ``test_resnet`` (a ResNet of 0.4 M parameters that
timm publishes as ``timm/test_resnet.r160_in1k``) made here with a fixed seed, so the expected weights
are known. The checks that talk to the servers run lossnet in a subprocess whose environment points
``HF_ENDPOINT`` at the loopback Hub and ``HF_HUB_CACHE`` at ``tmp_path`` (``huggingface_hub`` reads both at
import time); the offline-message check, which asks no server, runs in process with those constants patched.
Not covered: Xet transfers (the real Hub adds ``X-Xet-Hash`` for Xet-backed repos; with ``hf_xet`` installed
``huggingface_hub`` then downloads through the Xet CAS protocol, not this GET).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("timm")
pytest.importorskip("huggingface_hub")

from _helpers.loopback import LoopbackServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NAME = "test_resnet.r160_in1k"
REPO = f"timm/{NAME}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SEED = 11


class FakeHub:
    """The Hub's ``resolve`` endpoint for ``files`` (``{"repo/file": bytes}``), redirecting to ``cdn``.

    Attributes:
        requests: ``(method, path)`` in arrival order.
        status: ``{"repo/file": code}``: answer this error code for that file instead.
    """

    def __init__(self, files: dict[str, bytes], cdn: LoopbackServer) -> None:
        self.requests: list[tuple[str, str]] = []
        self.status: dict[str, int] = {}
        self._lock = threading.Lock()
        hub = self
        repos = {key.rsplit("/", 1)[0] for key in files}
        blobs = {}
        for key, data in files.items():
            sha = hashlib.sha256(data).hexdigest()
            blobs[key] = (sha, len(data), cdn.add(f"blobs/{sha}", data))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._answer()

            def do_GET(self):
                self._answer()

            def _reply(self, code: int, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in {**headers, "Content-Length": "0"}.items():
                    self.send_header(k, v)
                self.end_headers()

            def _answer(self):
                path = self.path.split("?", 1)[0]
                with hub._lock:
                    hub.requests.append((self.command, path))
                # /{org}/{name}/resolve/{revision}/{file}
                parts = path.lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._reply(404, {})
                repo, file = "/".join(parts[:2]), "/".join(parts[4:])
                key = f"{repo}/{file}"
                if repo not in repos:
                    return self._reply(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                if key in hub.status:
                    return self._reply(hub.status[key], {"X-Repo-Commit": COMMIT})
                if key not in blobs:
                    return self._reply(
                        404,
                        {
                            "X-Error-Code": "EntryNotFound",
                            "X-Error-Message": "Entry not found",
                            "X-Repo-Commit": COMMIT,
                        },
                    )
                sha, size, url = blobs[key]
                self._reply(
                    302,
                    {
                        "Location": url,
                        "X-Repo-Commit": COMMIT,
                        "ETag": '"0000000000000000000000000000000000000000"',  # the git blob id of the LFS pointer
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(size),
                    },
                )

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _state_dict_bytes() -> tuple[bytes, dict]:
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(SEED)
    state = {k: v.contiguous() for k, v in timm.create_model("test_resnet", pretrained=False).state_dict().items()}
    return save(state), state


# Runs lossnet as a user would: default weights ("imagenet"), nothing but the environment pointing it at
# the loopback Hub. Prints the weights' source and a few of the truncated body's tensors (as lists).
_SCRIPT = (
    """
import json, sys
import lossnet
from lossnet.errors import WeightsError
from lossnet.network import LossNetwork
try:
    net = LossNetwork("timm:%s", layers="E,L")
except WeightsError as exc:
    print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
    sys.exit(0)
state = net.body.state_dict()
print(json.dumps({"source": net.weights_source, "keys": sorted(state), "digest": {
    k: __import__("hashlib").sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in state.items()}}))
"""
    % NAME
)


def _run(cache: Path, endpoint: str, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        HF_ENDPOINT=endpoint,
        HF_HOME=str(cache.parent / "hf_home"),  # no token or config of the machine's user
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)
    r = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _digests(state: dict, keys) -> dict:
    return {k: hashlib.sha256(state[k].contiguous().numpy().tobytes()).hexdigest() for k in keys}


@pytest.fixture
def served():
    data, state = _state_dict_bytes()
    cdn = LoopbackServer().start()
    hub = FakeHub({f"{REPO}/model.safetensors": data}, cdn)
    try:
        yield hub, cdn, data, state
    finally:
        hub.stop()
        cdn.stop()


def test_default_weights_download_through_the_hub_then_load_offline_from_the_cache(served, tmp_path):
    hub, cdn, data, state = served
    cache = tmp_path / "hub"
    out = _run(cache, hub.endpoint, offline=False)
    assert "error" not in out, out
    assert out["source"] == f"timm pretrained: {REPO}"
    # The weights file was asked of the Hub and its bytes came whole from the CDN, once.
    assert ("HEAD", f"/{REPO}/resolve/main/model.safetensors") in hub.requests
    sha = hashlib.sha256(data).hexdigest()
    assert [r[:2] for r in cdn.requests] == [("GET", f"/blobs/{sha}")]
    assert cdn.served == {f"/blobs/{sha}": len(data)}
    # The truncated body (stem .. layer4) holds exactly the served tensors.
    keys = out["keys"]
    assert "conv1.0.weight" in keys and any(k.startswith("layer4.") for k in keys)
    assert not any(k.startswith("fc.") for k in keys)  # cut after L: the head is gone
    assert out["digest"] == _digests(state, keys)
    # The file sits in the Hugging Face cache layout under tmp_path.
    repo_dir = cache / "models--timm--test_resnet.r160_in1k"
    assert (repo_dir / "refs" / "main").read_text() == COMMIT
    assert (repo_dir / "blobs" / sha).read_bytes() == data
    assert (repo_dir / "snapshots" / COMMIT / "model.safetensors").read_bytes() == data

    # Second construction: offline, the servers gone, from the cache alone.
    n_hub, n_cdn = len(hub.requests), len(cdn.requests)
    hub.stop()
    cdn.stop()
    again = _run(cache, hub.endpoint, offline=True)
    assert again["digest"] == out["digest"] and again["source"] == out["source"]
    assert (len(hub.requests), len(cdn.requests)) == (n_hub, n_cdn)


def _one_line_weights_error(out: dict) -> str:
    assert out.get("type") == "WeightsError", out
    msg = out["error"]
    assert "\n" not in msg
    assert msg.startswith(f"no pretrained weights for timm:{NAME}: ")
    assert "weights=PATH" in msg and "weights=None" in msg
    return msg


def test_weights_missing_on_the_hub_are_a_one_line_weights_error_naming_the_url(tmp_path):
    """The repo exists but holds no weights: timm asks for model.safetensors, then pytorch_model.bin; both
    404 with the Hub's EntryNotFound code. The message carries the URL (huggingface_hub puts it on a
    second line, which lossnet used to drop)."""
    cdn = LoopbackServer().start()
    hub = FakeHub({f"{REPO}/README.md": b"# test_resnet\n"}, cdn)
    try:
        out = _run(tmp_path / "hub", hub.endpoint, offline=False)
    finally:
        hub.stop()
        cdn.stop()
    msg = _one_line_weights_error(out)
    assert f"Entry Not Found for url: {hub.endpoint}/{REPO}/resolve/main/pytorch_model.bin" in msg
    assert hub.requests == [
        ("HEAD", f"/{REPO}/resolve/main/model.safetensors"),
        ("HEAD", f"/{REPO}/resolve/main/pytorch_model.bin"),
    ]
    assert cdn.requests == []


@pytest.mark.slow
def test_a_plain_404_for_the_file_is_a_one_line_weights_error(served, tmp_path):
    hub, cdn, _, _ = served
    hub.status[f"{REPO}/model.safetensors"] = 404  # no X-Error-Code (a mirror that is not quite the Hub)
    msg = _one_line_weights_error(_run(tmp_path / "hub", hub.endpoint, offline=False))
    assert "404" in msg and hub.endpoint in msg
    assert cdn.requests == []


def test_offline_and_not_cached_says_hf_hub_offline_not_check_your_connection(served, tmp_path, monkeypatch):
    """In process (nothing is asked of any server): huggingface_hub's own message would say "check your
    connection"; lossnet says the weights are not cached and HF_HUB_OFFLINE=1 forbids a download."""
    from huggingface_hub import constants

    from lossnet.errors import WeightsError
    from lossnet.network import LossNetwork

    hub, cdn, _, _ = served
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)  # loopback even if it did ask
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as info:
        LossNetwork(f"timm:{NAME}", layers="E,L")
    msg = _one_line_weights_error({"type": "WeightsError", "error": str(info.value)})
    assert f"not in the Hugging Face cache {cache}, and HF_HUB_OFFLINE=1 forbids a download" in msg
    assert "connection" not in msg.lower()
    assert hub.requests == [] and cdn.requests == []


@pytest.mark.slow
def test_an_unreachable_hub_is_a_one_line_weights_error_naming_the_endpoint(served, tmp_path):
    """Nothing listens at HF_ENDPOINT: huggingface_hub retries each of timm's two files with backoff
    (about 23 s each, its defaults), then lossnet names the endpoint and the connection error."""
    hub, _, _, _ = served
    hub.stop()
    cache = tmp_path / "hub"
    msg = _one_line_weights_error(_run(cache, hub.endpoint, offline=False))
    assert (
        f"not in the Hugging Face cache {cache}, and the Hugging Face Hub at {hub.endpoint} could not be reached" in msg
    )
    assert "ConnectError" in msg


@pytest.mark.slow
def test_a_hub_answering_500_is_retried_then_a_one_line_weights_error(served, tmp_path):
    """HTTP 500 for model.safetensors: huggingface_hub retries with backoff (about 23 s, its defaults), gives
    up, and timm falls back to pytorch_model.bin (404 here), whose error is the one reported."""
    hub, cdn, _, _ = served
    hub.status[f"{REPO}/model.safetensors"] = 500
    msg = _one_line_weights_error(_run(tmp_path / "hub", hub.endpoint, offline=False))
    heads = [r for r in hub.requests if r == ("HEAD", f"/{REPO}/resolve/main/model.safetensors")]
    assert len(heads) > 2  # retried
    assert f"{REPO}/resolve/main/pytorch_model.bin" in msg
    assert cdn.requests == []
