"""``lossnet weights trim``: write the weights a truncated loss network needs, and nothing more."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="weight files: trim to an extraction layer")
    sub = p.add_subparsers(dest="weights_cmd", metavar="ACTION")
    tp = sub.add_parser("trim", help="write a safetensors file with only the layers up to --layer")
    tp.add_argument("arch")
    tp.add_argument(
        "--layer", required=True, help="deepest layer to keep (E/S/M/L, alias or FX node; comma-separated allowed)"
    )
    tp.add_argument("--weights", default="imagenet", help="source: 'imagenet' (default) or a weights file")
    tp.add_argument("--weights-dir", help="folder searched for local ImageNet weights")
    tp.add_argument("-o", "--output", required=True, help="output .safetensors file")
    tp.set_defaults(func=_trim)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def source_label(source: str | None) -> str:
    """Where trimmed weights came from, without a local path (issue #32): a file as its name and
    sha256, a label (``torchvision:...``, ``none``) as it is."""
    import os
    from pathlib import Path

    from lossnet.weights import sha256_file

    if source and os.path.isfile(source):
        return f"{Path(source).name} (sha256:{sha256_file(source)})"
    return str(source)


def _trim(args) -> int:
    from pathlib import Path

    from lossnet.errors import LossnetError
    from lossnet.network import LossNetwork
    from lossnet.weights import save_safetensors, sha256_file

    out = Path(args.output)
    if out.suffix.lower() != ".safetensors":
        raise LossnetError(f"output must end in .safetensors: {out}")
    if not out.parent.exists():
        raise LossnetError(f"output folder does not exist: {out.parent}")
    net = LossNetwork(args.arch, layers=args.layer, weights=args.weights, weights_dir=args.weights_dir)
    state = net.body.state_dict()
    save_safetensors(
        out,
        state,
        metadata={"arch": args.arch, "layers": ",".join(net.nodes), "source": source_label(net.weights_source)},
    )
    n = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {out}: {len(state)} tensors, {n:,} values, {out.stat().st_size:,} bytes, sha256 {sha256_file(out)}")
    return 0
