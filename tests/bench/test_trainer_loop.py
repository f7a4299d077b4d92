"""The trainer owns the step (issue #29): a task supplies batches and a step; autocast, the
non-finite check, the optimiser (and its fp16 scaler), hooks, records and the phase timer are the
trainer's, the same for every training benchmark."""

from __future__ import annotations

import math

import pytest
import torch

import lossnet  # noqa: F401
from lossnet.bench.trainer import TrainingTask, fit


class Linear(TrainingTask):
    """y = 2x on 3 batches; optional NaN at one step; records what the trainer did."""

    def __init__(self, nan_at: int | None = None):
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.progress = False
        self.nan_at = nan_at
        self.seen_dtypes: list[torch.dtype] = []
        self.events: list[str] = []

    def batches(self, epoch, epochs):
        for i in range(3):
            x = torch.full((4, 1), float(i + 1))
            yield x, 2 * x

    def before_step(self, epoch, step):
        self.events.append(f"before{step}")

    def step(self, batch):
        x, y = batch
        out = self.model(x)
        self.seen_dtypes.append(out.dtype)
        loss = ((out.float() - y) ** 2).mean()
        if self.nan_at is not None and len(self.seen_dtypes) - 1 == self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "n": len(x)}

    def after_optimize(self):
        self.events.append("after")


def test_loop_matches_a_hand_written_loop(tmp_path):
    task, outcome = fit(Linear, {"seed": 0, "epochs": 2}, tmp_path, name="t")
    torch.manual_seed(0)
    ref = Linear()
    for _ in range(2):
        for x, y in ref.batches(0, 2):
            loss = ((ref.model(x) - y) ** 2).mean()
            ref.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ref.optimizer.step()
    assert torch.equal(task.model.weight, ref.model.weight)
    assert outcome.status == "done" and [r["epoch"] for r in outcome.history] == [1, 2]
    assert task.events[:6] == ["before0", "after", "before1", "after", "before2", "after"]
    assert math.isfinite(outcome.history[-1]["train_loss"])


def test_non_finite_loss_stops_before_the_optimiser_step(tmp_path):
    task, outcome = fit(lambda: Linear(nan_at=1), {"seed": 0, "epochs": 2}, tmp_path, name="t")
    assert outcome.status == "diverged"
    assert task.events == ["before0", "after", "before1"]  # the NaN step never reached the optimiser


@pytest.mark.parametrize("amp, dtype", [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_amp_runs_the_step_under_autocast(tmp_path, amp, dtype):
    task, outcome = fit(Linear, {"seed": 0, "epochs": 1, "amp": amp}, tmp_path, name="t")
    assert outcome.status == "done" and set(task.seen_dtypes) == {dtype}


def test_step_returning_none_is_divergence(tmp_path):
    class Broken(Linear):
        def step(self, batch):
            return None

    _, outcome = fit(Broken, {"seed": 0, "epochs": 1}, tmp_path, name="t")
    assert outcome.status == "diverged"
