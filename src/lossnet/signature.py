"""Reproducibility signatures: one line that says which variant of a perceptual score produced a number.

Users of perceptual metrics cannot tell which variant produced a published value (lpips v0.0 vs
v0.1, [0, 1] vs [-1, 1] input, which weights). Every :class:`~lossnet.loss.PerceptualMetric` /
:class:`~lossnet.loss.PerceptualLoss` has a ``.signature``, e.g.::

    lossnet 0.1.0|alexnet|preset=lpips-alex|spatial|heads=lpips-v0.1|range=0,1:error|norm=imagenet|tv=0.28|torch=2.13|w=imagenet:sha256:3a1f...

Fields, ``|``-separated, in this order (optional ones only when not the default):

- ``lossnet <version>``
- the architecture (``timm:<name>`` for timm, ``module:<Class>`` for a user's module passed as
  ``model=``), ``:l2pool`` when DISTS's L2 pooling replaces max pooling
- the layers: ``preset=<name>`` for a preset, else ``+``-joined E/S/M/L keys where a layer is an
  extraction point, otherwise the FX node name (so ``relu2_2`` and ``features.8`` sign alike)
- the distance; ``lw=<l1>,<l2>`` per-layer weights when not all 1
- ``heads=``: ``none``, ``lpips-v0.1`` (the lpips package's heads), ``dists-<version>``, or
  ``custom:<sha256 prefix>`` for user channel weights
- ``range=<lo>,<hi>:<range_check mode>``; ``norm=imagenet|none|custom:<mean>/<std>``; ``ti=1`` (googlenet/inception
  ``transform_input``); ``mode=train`` (``loss_net_mode``)
- ``tv=`` torchvision and ``torch=`` major.minor versions; ``timm=`` its version for timm nets
- ``w=<kind>:sha256:<16 hex>``: the weights kind (imagenet / none / file; ``module`` for a user's
  module with its own parameters; imagenet means timm's pretrained weights for timm nets) and a content hash of the
  tensors the truncated loss network holds (name, dtype, shape and bytes of every parameter and
  persistent buffer, sorted by name), so the same weights sign alike whether they came from a
  download, a local file or a trimmed file (and two truncation depths of one file differ).

:func:`parse_signature` turns a signature back into a dict.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["signature", "parse_signature", "state_digest", "tensors_digest"]

DIGEST_CHARS = 16


def tensors_digest(tensors: Mapping[str, "torch.Tensor"]) -> str:
    """sha256 (hex) over ``name, dtype, shape, bytes`` of each tensor, sorted by name."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}|{str(t.dtype).replace('torch.', '')}|{tuple(t.shape)}|".encode())
        if t.is_meta:
            h.update(b"meta")
            continue
        t = t.cpu().contiguous()
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_digest(module: "nn.Module | None") -> str:
    """:func:`tensors_digest` of ``module.state_dict()`` (parameters and persistent buffers)."""
    if module is None:
        return hashlib.sha256(b"").hexdigest()
    return tensors_digest(module.state_dict())


def _version(dist: str, parts: int = 2) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(dist)
    except PackageNotFoundError:
        return "none"
    return ".".join(v.split("+")[0].split(".")[:parts])


def _fmt(v: float) -> str:
    return f"{float(v):g}"


def _layers_field(model) -> str:
    from lossnet.models.registry import get_spec

    if model.preset is not None:
        return f"preset={model.preset}"
    # a user's module (model=) has no registry entry: its layers are recorded as given
    points = {} if model.net.startswith("module:") else {node: key for key, node in get_spec(model.net).layers.items()}
    return "+".join(points.get(node, node) for node in model.network.nodes)


def _weights_digest(model) -> str:
    body = model.network.body
    key = None
    if body is not None:
        key = tuple((p.data_ptr(), p._version) for p in body.state_dict().values())
    cached = getattr(model, "_signature_digest", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = state_digest(body)[:DIGEST_CHARS]
    try:
        object.__setattr__(model, "_signature_digest", (key, digest))
    except Exception:  # pragma: no cover - a frozen object; recompute next time
        pass
    return digest


def signature(model) -> str:
    """The signature of a :class:`~lossnet.loss.PerceptualMetric` / :class:`~lossnet.loss.PerceptualLoss`."""
    from lossnet._version import __version__

    net = model.network
    fields = [
        f"lossnet {__version__}",
        net.arch + {"l2": ":l2pool", "blur": ":blurpool"}.get(getattr(net, "pooling", "max"), ""),
    ]
    fields.append(_layers_field(model))
    fields.append(model.distance.name)
    lw = model.distance.layer_weights
    if lw is not None and any(w != 1.0 for w in lw):
        fields.append("lw=" + ",".join(_fmt(w) for w in lw))
    fields.append(f"heads={model.heads_label}")
    lo, hi = model.input_range
    fields.append(f"range={_fmt(lo)},{_fmt(hi)}:{model.range_check}")
    fields.append(f"norm={getattr(net, 'normalization', 'imagenet')}")
    if getattr(net, "transform_input", False):
        fields.append("ti=1")
    if getattr(net, "loss_net_mode", "eval") != "eval":
        fields.append(f"mode={net.loss_net_mode}")
    ens = getattr(model, "ensemble", None)
    if ens is not None:  # the transforms change the value: their count, seed and settings
        import hashlib

        fields.append(
            f"ens={ens.n}:{ens.seed}:{hashlib.sha256(repr(sorted(ens.config.items())).encode()).hexdigest()[:8]}"
        )
    fields.append(f"tv={_version('torchvision')}")
    fields.append(f"torch={_version('torch')}")
    if net.arch.startswith("timm:"):
        fields.append(f"timm={_version('timm', 3)}")
    # a user's module brings its own weights: "module", with the digest of its (truncated) state dict
    kind = "module" if net.arch.startswith("module:") and net.weights_spec.kind != "file" else net.weights_spec.kind
    fields.append(f"w={kind}:sha256:{_weights_digest(model)}")
    return "|".join(fields)


def parse_signature(text: str) -> dict[str, str]:
    """``{"lossnet": version, "arch": ..., "layers": ..., "distance": ..., "heads": ..., ...}``.

    ``key=value`` fields keep their key; the positional ones are ``lossnet``, ``arch``, ``layers``
    (or ``preset``) and ``distance``.
    """
    parts = text.strip().split("|")
    if not parts or not parts[0].startswith("lossnet "):
        raise ValueError(f"not a lossnet signature: {text!r}")
    out = {"lossnet": parts[0].split(" ", 1)[1]}
    positional = iter(("arch", "layers", "distance"))
    for p in parts[1:]:
        key, sep, value = p.partition("=")
        if sep and key in ("preset", "lw", "heads", "range", "norm", "ti", "mode", "ens", "tv", "torch", "timm", "w"):
            out[key] = value
            if key == "preset":
                next(positional, None)
        else:
            out[next(positional, f"field{len(out)}")] = p
    return out
