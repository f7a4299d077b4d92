"""``lossnet nets list|show``: the architecture registry."""

from __future__ import annotations

from lossnet.cli.common import print_table


def register(subparsers) -> None:
    p = subparsers.add_parser("nets", help="list loss-network architectures and their extraction layers")
    sub = p.add_subparsers(dest="nets_cmd", metavar="ACTION")
    lp = sub.add_parser("list", help="table of architectures (the paper's 14, or --all torchvision models)")
    lp.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'vgg*'")
    lp.add_argument("--all", action="store_true", help="include every torchvision classification model")
    lp.add_argument("--weights-dir", help="folder searched for local ImageNet weights")
    lp.add_argument(
        "--source",
        choices=("torchvision", "timm", "all"),
        default="torchvision",
        help="torchvision (default), timm (timm:<name>, needs lossnet[timm]) or all",
    )
    lp.add_argument("--pattern", dest="pattern_opt", help="wildcard filter (same as the positional pattern)")
    lp.add_argument("--pretrained", action="store_true", help="timm: only names with pretrained weights (name.tag)")
    lp.set_defaults(func=_list)
    sp = sub.add_parser("show", help="details of one architecture")
    sp.add_argument("arch")
    sp.add_argument("--nodes", action="store_true", help="list every FX node usable as a layer")
    sp.add_argument("--no-structure", action="store_true", help="skip the measured attributes (builds the model)")
    sp.set_defaults(func=_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _list(args) -> int:
    from lossnet.models.registry import get_spec, list_models
    from lossnet.weights import find_local_weights

    pattern = args.pattern_opt or args.pattern
    if args.source != "torchvision":
        from lossnet.models.timm import list_names

        # timm has >1000 models: names only (lossnet nets show timm:<name> gives E/S/M/L)
        names = list_names(pattern, pretrained=args.pretrained)
        for n in names:
            print(n)
        if args.source == "timm":
            print(f"{len(names)} timm model(s); 'lossnet nets show timm:<name>' lists E/S/M/L")
            return 0
    rows = []
    for arch in list_models(pattern, paper_only=not args.all and args.source == "torchvision"):
        spec = get_spec(arch)
        local = find_local_weights(arch, args.weights_dir)
        rows.append(
            {
                "arch": arch,
                **{k: spec.layers.get(k) for k in "ESML"},
                "top1": spec.imagenet_top1,
                "depth": spec.depth,
                "mflops": spec.mflops,
                "local_weights": local.name if local else "-",
            }
        )
    print_table(rows)
    return 0


def _show(args) -> int:
    from lossnet.models.registry import get_spec

    spec = get_spec(args.arch)
    if args.arch.startswith("timm:"):
        return _show_timm(args, spec)
    print(f"{spec.name}: torchvision weights {spec.weights_tag}")
    if spec.in_paper:
        print(f"paper Table I: ImageNet top-1 {spec.imagenet_top1}%, depth {spec.depth}, {spec.mflops} MFLOPs")
        print_table([{"point": k, "node": v} for k, v in spec.layers.items()])
    elif spec.layers:
        print("extraction points (lossnet's choice; not in the paper):")
        print_table([{"point": k, "node": v} for k, v in spec.layers.items()])
    if not args.no_structure:
        from lossnet.structure import arch_attributes, layer_stats

        attrs = arch_attributes(args.arch)
        print("measured: " + ", ".join(f"{k} {v}" for k, v in attrs.items()))
        if spec.in_paper:
            print_table([{"point": k, **layer_stats(args.arch, k)} for k in spec.layers])
    return _show_aliases_and_nodes(args, spec)


def _show_aliases_and_nodes(args, spec) -> int:
    """The end of ``nets show``: layer aliases, and every feature node with ``--nodes``."""
    from lossnet.models.layers import list_nodes

    if spec.aliases:
        print("aliases: " + ", ".join(f"{k}={v}" for k, v in spec.aliases.items()))
    if args.nodes:
        for n in list_nodes(args.arch):
            print(n)
    return 0


def _show_timm(args, spec) -> int:
    from lossnet.models.timm import describe

    info = describe(args.arch)
    print(
        f"{spec.name}: timm model {info.name} ({'plain ViT' if info.kind == 'vit' else 'hierarchical'}); weights: "
        f"timm pretrained via the Hugging Face cache/download (default), --weights FILE, or --weights none"
    )
    fmt = lambda v: ",".join(f"{x:.4g}" for x in v)  # noqa: E731
    print(
        f"normalisation (timm pretrained config): mean {fmt(info.mean)}, std {fmt(info.std)}; "
        f"pretrained input size {info.input_size[1]}x{info.input_size[2]}"
    )
    if info.patch:
        print(
            f"patch size {info.patch}, {info.prefix} prefix token(s); other sizes are zero-padded to a multiple "
            f"of the patch size (timm's dynamic_img_pad)"
        )
    print("extraction points (lossnet's rule, docs/backbones.md):")
    print_table([{"point": k, "node": v} for k, v in spec.layers.items()])
    return _show_aliases_and_nodes(args, spec)
