"""What a preset (LPIPS, DISTS) or a heads file fixes of a loss/metric: the network, layers,
distance, channel weights and pooling, with an error when an explicit argument contradicts it."""

from __future__ import annotations

import os

from lossnet.errors import InputError

__all__ = ["DEFAULT_NET", "DEFAULT_LAYER"]

#: The network and layer used when neither a preset, a heads file, ``net`` nor ``layers`` is given.
DEFAULT_NET = "vgg16"
DEFAULT_LAYER = "relu2_2"


def _check_default_layer(net: str) -> None:
    """``net`` given without ``layers``: the default layer relu2_2 is a VGG alias (vgg16/vgg19, not
    vgg11/vgg13), so for other nets say that no layers were given rather than let the registry
    complain about a layer the caller never named."""
    from lossnet.models.registry import get_spec

    spec = get_spec(net)  # an unknown net raises its own error here
    if DEFAULT_LAYER in spec.aliases:
        return
    points = (
        f"layers='E'/'S'/'M'/'L' ({net}'s extraction points, see lossnet.models.registry) or " if spec.layers else ""
    )
    raise InputError(
        f"no layers given for net={net!r}, and the default layer {DEFAULT_LAYER} exists only in VGG16/VGG19; "
        f"pass {points}layers=<node name> ('lossnet nets show {net} --nodes' lists them)"
    )


def _resolve_preset(preset: str, net, layers, distance, channel_weights) -> dict:
    """The network/layers/distance/heads a preset fixes (errors when the arguments contradict it)."""
    from lossnet.dists_preset import DISTS_ARCH, DISTS_LAYERS, DISTS_PRESET, dists_channel_weights, dists_version
    from lossnet.lpips_presets import PRESETS, get_preset, lpips_heads
    from lossnet.models.layers import resolve_layers
    from lossnet.stlpips_preset import STLPIPS_PRESETS

    if preset == DISTS_PRESET:
        arch, p_layers, p_distance, pooling = DISTS_ARCH, DISTS_LAYERS, "dists", "l2"
    elif preset == "adists":  # A-DISTS (lossnet.adists): the DISTS network, no channel weights
        arch, p_layers, p_distance, pooling = DISTS_ARCH, DISTS_LAYERS, "adists", "l2"
    elif preset in STLPIPS_PRESETS:
        arch, _, lpips_name = STLPIPS_PRESETS[preset]
        p_layers, p_distance, pooling = get_preset(lpips_name).layers, "spatial", "blur"
    elif preset not in PRESETS:
        # get_preset's own message lists the LPIPS presets only; "dists" and ST-LPIPS are accepted here too
        raise InputError(
            f"unknown preset {preset!r}; choose one of {', '.join([*PRESETS, *STLPIPS_PRESETS, DISTS_PRESET, 'adists'])}"
        )
    else:
        p = get_preset(preset)
        arch, p_layers, p_distance, pooling = p.arch, p.layers, "spatial", "max"
    if net is not None and net != arch:
        raise InputError(f"preset {preset!r} uses {arch}, not net={net!r}")
    if layers is not None and list(resolve_layers(arch, list(layers))) != list(p_layers):
        raise InputError(f"preset {preset!r} uses layers {', '.join(p_layers)}, not {', '.join(layers)}")
    if distance not in (None, p_distance):
        raise InputError(f"preset {preset!r} uses the {p_distance!r} distance, not {distance!r}")
    if channel_weights is not None:
        raise InputError(f"preset {preset!r} brings its own channel weights; do not pass channel_weights")
    if preset == "adists":
        return dict(
            net=arch,
            layers=list(layers) if layers is not None else list(p_layers),
            distance=p_distance,
            channel_weights=None,
            pooling=pooling,
            heads="none",
            lpips_version=None,
        )
    if preset in STLPIPS_PRESETS:
        from lossnet.stlpips_preset import stlpips_state, stlpips_version

        backbone, heads, source = stlpips_state(preset)
        return dict(
            net=arch,
            layers=list(layers) if layers is not None else list(p_layers),
            distance=p_distance,
            channel_weights=heads,
            pooling=pooling,
            heads=f"stlpips-{stlpips_version()}",
            lpips_version=None,
            backbone=(backbone, source),
        )
    if preset == DISTS_PRESET:
        return dict(
            net=arch,
            layers=list(layers) if layers is not None else list(p_layers),
            distance=p_distance,
            channel_weights=dists_channel_weights(),
            pooling=pooling,
            heads=f"dists-{dists_version()}",
            lpips_version=None,
        )
    from lossnet.lpips_presets import lpips_version

    version = lpips_version()
    return dict(
        net=arch,
        layers=list(layers) if layers is not None else list(p_layers),
        distance=p_distance,
        channel_weights=lpips_heads(p),
        pooling=pooling,
        heads="lpips-v0.1",
        lpips_version=version,
    )


def _resolve_heads(heads, preset, net, layers, distance, channel_weights, normalize, model=None) -> dict:
    """The network/layers/normalisation/channel weights a heads file fixes (errors when the
    arguments contradict it). ``heads``: a path or a :class:`lossnet.heads.Heads`."""
    from lossnet.heads.file import Heads, heads_digest, load_heads
    from lossnet.models.layers import resolve_layers
    from lossnet.models.registry import get_spec

    if isinstance(heads, Heads):
        h, where = heads, "heads"
        from lossnet.signature import tensors_digest

        label = "custom:" + tensors_digest({str(i): w for i, w in enumerate(h.weights)})[:16]
    else:
        h, where = load_heads(heads), f"heads file {os.fspath(heads)}"
        label = "file:" + heads_digest(heads)[:16]
    if preset is not None:
        raise InputError(f"pass either preset={preset!r} or heads=, not both")
    if channel_weights is not None:
        raise InputError(f"{where} brings its own channel weights; do not pass channel_weights")
    if model is not None:
        # a user's module: the heads file names its class (module:<Class>); layers are compared as given
        if h.net != f"module:{type(model).__name__}":
            raise InputError(f"{where} is for net {h.net}, not a model= of type {type(model).__name__}")
        if layers is not None and [str(n).strip() for n in layers] != list(h.layers):
            raise InputError(f"{where} is for layers {','.join(h.layers)}, not {','.join(layers)}")
    elif h.net.startswith("module:"):
        raise InputError(f"{where} is for a user's module ({h.net}): pass that module as model=")
    elif net is not None and get_spec(net).name != get_spec(h.net).name:
        raise InputError(f"{where} is for net {h.net}, not net={net!r}")
    if (
        model is None
        and layers is not None
        and list(resolve_layers(h.net, list(layers))) != list(resolve_layers(h.net, list(h.layers)))
    ):
        raise InputError(f"{where} is for layers {','.join(h.layers)}, not {','.join(layers)}")
    if distance not in (None, "spatial"):
        raise InputError(f"{where} calibrates the 'spatial' distance, not {distance!r}")
    if normalize not in (None, h.normalize):
        raise InputError(f"{where} was fitted with normalize={h.normalize!r}, not {normalize!r}")
    return dict(
        net=None if model is not None else h.net,
        layers=list(h.layers),
        distance="spatial",
        channel_weights=[w.clone() for w in h.weights],
        normalize=h.normalize,
        heads=label,
        backbone_sha256=h.meta.get("backbone_sha256"),
        where=where,
    )


def check_heads_backbone(network, recorded: str | None, where: str) -> None:
    """Warn when the loss network is not the backbone the heads were fitted on (``backbone_sha256``
    in the heads file: e.g. fitted with ``--weights none`` and loaded on another random init)."""
    if not recorded:
        return
    from lossnet.signature import tensors_digest

    current = tensors_digest(network.state_dict())
    if current != recorded:
        import warnings

        warnings.warn(
            f"{where} was fitted on another backbone (sha256 {recorded[:16]}, this network's {current[:16]}): "
            "its calibration does not apply to these weights (pass the weights it was fitted with)",
            UserWarning,
            stacklevel=4,
        )
