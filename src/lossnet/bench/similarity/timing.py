"""Timing the similarity benchmark (``lossnet bench similarity --profile``, ``lossnet sweep estimate``):
a step is one batch of BAPPS evaluation, timed through the benchmark's public functions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package imports this module
    from lossnet.bench.profile import StepTiming
    from lossnet.bench.similarity import SimilarityConfig

__all__ = ["time_evaluation"]


def time_evaluation(
    config: SimilarityConfig, steps: int = 5, *, warmup: int = 1, counts: dict[str, int] | None = None
) -> StepTiming:
    """Time ``steps`` batches of the similarity benchmark's BAPPS evaluation through its public
    functions: ``data`` (decoding the batch's PNGs, ``bapps.decode``), ``loss_net`` (the network and
    distances, ``evaluate.distances_2afc``) and ``metric`` (the 2AFC score of the batch).

    ``counts`` (``{"2afc/<subset>": items}``) gives the item counts of the full run when the data
    folder holds fewer (synthetic data); by default the folder's own counts, capped by ``max_items``.
    """
    import numpy as np
    import torch

    from lossnet.bench.base import config_dict
    from lossnet.bench.profile import StepTiming, process_start_seconds
    from lossnet.bench.similarity import bapps, scores
    from lossnet.bench.similarity.evaluate import config_metric, distances_2afc
    from lossnet.devices import resolve_device

    device = resolve_device(config)
    bs = int(config.batch_size)
    t_setup = time.perf_counter()
    notes: list[str] = []
    _, metric = config_metric(config, device)
    setup_s = time.perf_counter() - t_setup
    kinds = [("2afc", config.split, s) for s in config.subsets_2afc] + [("jnd", "val", s) for s in config.subsets_jnd]
    steps_per_run = 0
    for kind, split, subset in kinds:  # batches of the full run: items of each subset (real counts), capped
        n = (counts or {}).get(f"{kind}/{subset}")
        if n is None:
            n = len(bapps.list_items(config.data, kind, split, subset))
        if config.max_items:
            n = min(n, int(config.max_items))
        steps_per_run += -(-n // bs)
    kind, split, subset = next((k for k in kinds if k[0] == "2afc"), kinds[0])
    items = bapps.list_items(config.data, kind, split, subset)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    totals = {"data": 0.0, "loss_net": 0.0, "metric": 0.0}
    walls = []
    n_items = len(items)
    for i in range(warmup + steps):
        idx = [(i * bs + j) % n_items for j in range(bs)]
        sync()
        t0 = time.perf_counter()
        data = bapps.decode(
            items, subset, idx, size=config.size, skip_bad=config.skip_bad, batch_size=bs, num_workers=0, progress=False
        )
        t1 = time.perf_counter()
        if kind == "2afc":
            d0, d1 = distances_2afc(data, metric.features, metric.compare, batch_size=bs, device=device, progress=False)
        else:
            from lossnet.bench.similarity.evaluate import distances_jnd

            d0 = d1 = distances_jnd(data, metric.features, metric.compare, batch_size=bs, device=device, progress=False)
        sync()
        t2 = time.perf_counter()
        if kind == "2afc":
            scores.score_2afc(
                np.asarray(d0).reshape(len(data), -1)[:, 0], np.asarray(d1).reshape(len(data), -1)[:, 0], data.judgments
            )
        else:
            scores.jnd_map(np.asarray(d0).reshape(len(data), -1)[:, 0], data.judgments)
        t3 = time.perf_counter()
        if i >= warmup:
            totals["data"] += t1 - t0
            totals["loss_net"] += t2 - t1
            totals["metric"] += t3 - t2
            walls.append(t3 - t0)
    n = len(walls)
    phases = {k: v / n for k, v in totals.items()}
    step_s = sum(walls) / n
    if config.num_workers:
        notes.append("decoding timed in-process (the run decodes with num_workers DataLoader workers)")
    return StepTiming(
        "similarity",
        config_dict(config),
        n,
        step_s,
        phases,
        steps_per_run,
        1,
        setup_s + process_start_seconds(),
        0.0,
        notes,
    )
