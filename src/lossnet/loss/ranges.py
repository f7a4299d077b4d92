"""Input range checks of the loss and the metric (``range_check``: error, warn, clamp, off).

The modes and their costs (host syncs, ``torch.compile`` graph breaks) are described in
:mod:`lossnet.loss`.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch

from lossnet.errors import InputError

__all__ = ["RANGE_CHECKS", "RangeWarning", "check_range"]

#: ``range_check`` modes (see the module docstring).
RANGE_CHECKS = ("error", "warn", "clamp", "off")

#: Slack on the declared input range, so rounding (e.g. 8-bit decode, bilinear resize) never trips it.
RANGE_TOLERANCE = 1e-3
#: ``range_check="clamp"`` warns (first batch only) when values overshoot by more than this fraction
#: of the range: a generator's few-percent overshoot is clamped silently, [-1, 1] or 0..255 data is not.
CLAMP_WARN_MARGIN = 0.05


class RangeWarning(UserWarning):
    """Input values outside the declared ``input_range`` (``range_check="warn"`` / ``"clamp"``)."""


def _parse_range(input_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise InputError(f"input_range must be (0, 1) or (-1, 1), got {input_range!r}") from None
    if (lo, hi) not in ((0.0, 1.0), (-1.0, 1.0)):
        raise InputError(f"input_range must be (0, 1) or (-1, 1), got {input_range!r}")
    return lo, hi


def _parse_mode(mode: str) -> str:
    if mode not in RANGE_CHECKS:
        raise InputError(f"range_check must be one of {', '.join(RANGE_CHECKS)}, got {mode!r}")
    return mode


def _check_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor, got dtype {x.dtype} (convert with x.float() / 255)")


def _nonfinite_message(x: torch.Tensor, name: str) -> str:
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(torch.isinf(x).sum())
    return f"{name}: contains NaN/Inf ({n_nan} NaN, {n_inf} Inf of {x.numel()} values)"


def _assert_finite(x: torch.Tensor, name: str) -> None:
    """NaN/Inf raise; without a host sync where one would be needed (accelerators, torch.compile)."""
    if x.is_meta or x.numel() == 0:
        return
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        # one reduction pass (NaN/Inf propagate into the sum) instead of isfinite's four; only a
        # non-finite sum (NaN/Inf, or an overflow of huge finite values) pays for the exact test
        if not math.isfinite(float(x.detach().sum(dtype=torch.float32))) and not bool(torch.isfinite(x).all()):
            raise InputError(_nonfinite_message(x, name))
    else:
        torch._assert_async(torch.isfinite(x).all(), f"{name}: contains NaN/Inf")


@torch.compiler.disable  # a host check: under torch.compile one clean graph break per image, not a failed trace
def _range_message(
    x: torch.Tensor, input_range: tuple[float, float], name: str, tolerance: float = RANGE_TOLERANCE
) -> str | None:
    """None when ``x`` is within ``input_range`` (plus ``tolerance`` of its width); else the message.
    One host sync; raises :class:`InputError` for NaN/Inf."""
    lo, hi = input_range
    mn, mx = torch.stack(torch.aminmax(x.detach())).float().tolist()
    if not (math.isfinite(mn) and math.isfinite(mx)):
        raise InputError(_nonfinite_message(x, name))
    tol = tolerance * (hi - lo)
    if mn >= lo - tol and mx <= hi + tol:
        return None
    hint = ""
    if lo == 0.0 and mn >= -1.0 - tol and mx <= 1.0 + tol:
        hint = "; pass input_range=(-1, 1)"
    elif lo == -1.0 and mn >= -tol and mx > 1.0 + tol and mx <= 255.0 + tol:
        hint = "; 8-bit values? divide by 255 and use input_range=(0, 1)"
    elif lo == 0.0 and mn >= -tol and mx <= 255.0 + tol:
        hint = "; 8-bit values? divide by 255"
    return f"{name}: values in [{mn:.4g}, {mx:.4g}] but input_range=({lo:g}, {hi:g}){hint}"


def check_range(
    x: torch.Tensor,
    input_range: tuple[float, float] = (0.0, 1.0),
    name: str = "input",
    mode: str = "error",
) -> torch.Tensor:
    """Check ``x`` against ``input_range`` as ``mode`` says and map it to [0, 1].

    Args:
        mode: ``"error"`` (raise), ``"warn"`` (warn, use as is), ``"clamp"`` (clamp into the range)
            or ``"off"``. NaN/Inf raise in every mode. This stateless form warns on every call in
            ``"warn"`` mode; the modules warn once.

    Raises:
        InputError: ``x`` is not a float tensor, contains NaN/Inf ("contains NaN/Inf"), or (mode
            ``"error"``) has values outside the range (the message says which range the values
            fit, e.g. ``pass input_range=(-1, 1)``).
    """
    return _apply_range(x, input_range, name, _parse_mode(mode), None)


class _RangeState:
    __slots__ = ("warned", "inspected")

    def __init__(self) -> None:
        self.warned = False
        self.inspected: set[str] = set()  # the image names ("pred", "target") whose first batch was inspected


def _apply_range(
    x: torch.Tensor, input_range: tuple[float, float], name: str, mode: str, state: _RangeState | None
) -> torch.Tensor:
    _check_tensor(x, name)
    lo, hi = input_range
    checkable = x.numel() > 0 and not x.is_meta
    if mode == "error" and checkable and torch.compiler.is_compiling():
        # inside a compiled graph: the same test as a device assertion (no graph break, no host sync)
        tol = RANGE_TOLERANCE * (hi - lo)
        ok = torch.isfinite(x).all() & (x >= lo - tol).all() & (x <= hi + tol).all()
        torch._assert_async(ok, f"{name}: contains NaN/Inf or values outside input_range=({lo:g}, {hi:g})")
    elif mode == "error" or (mode == "warn" and not (state is not None and state.warned)):
        if checkable:
            msg = _range_message(x, input_range, name)
            if msg is not None:
                if mode == "error":
                    raise InputError(msg)
                warnings.warn(
                    f"{msg} (range_check='warn': values are used as they are; warned once)", RangeWarning, stacklevel=4
                )
                if state is not None:
                    state.warned = True
    elif mode == "clamp":
        if state is not None and name not in state.inspected and checkable and not torch.compiler.is_compiling():
            # one look at the first batch: a clamp must not silently hide a wrong input_range
            state.inspected.add(name)
            msg = _range_message(x, input_range, name, CLAMP_WARN_MARGIN)
            if msg is not None:
                warnings.warn(
                    f"{msg} (range_check='clamp': values are clamped; only the first batch is inspected)",
                    RangeWarning,
                    stacklevel=4,
                )
        else:
            _assert_finite(x, name)
        x = x.clamp(lo, hi)
    else:  # "off", or "warn" after its warning
        _assert_finite(x, name)
    if lo == -1.0:
        x = (x + 1.0) * 0.5
    return x
