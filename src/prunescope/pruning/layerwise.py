"""Calibration plumbing: each decoder layer's linears see the inputs of the pruned layers below.

:func:`capture_layer_calls` records how the model calls every decoder layer;
:func:`prune_layerwise` replays the layers one at a time, feeding each linear's inputs to a
collector (Wanda's :class:`ColumnSquares` or a :class:`~prunescope.pruning.sparsegpt.SparseGPT`)
through forward hooks before pruning it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from prunescope.architectures import block_projections, family_of, input_width
from prunescope.models import decoder_layers, prunable_linears


class Collector(Protocol):
    """What gathers one linear's calibration inputs, batch by batch."""

    def add_batch(self, inp: Tensor) -> None: ...


class _StopForward(Exception):
    """Raised once the last decoder layer's call arguments are captured."""


@torch.no_grad()
def capture_layer_calls(
    model: nn.Module, calibration_ids: Tensor, batch_size: int, device: torch.device
) -> tuple[list[Tensor], list[list[tuple[tuple, dict]]]]:
    """Run the model once per batch and record how each decoder layer is called.

    Returns the layer-0 hidden states per batch and, for every layer and batch,
    the remaining positional and keyword arguments (attention mask, rotary
    embeddings, position ids...). They are recorded per layer because layer
    types differ, e.g. Gemma 2/3 alternate sliding-window and global masks.
    The forward stops at the last layer's pre-hook.
    """
    layers = decoder_layers(model)
    first_inputs: list[Tensor] = []
    calls: list[list[tuple[tuple, dict]]] = [[] for _ in layers]

    def make_hook(index: int):
        def hook(module, args, kwargs):
            if args:
                hidden, rest = args[0], tuple(args[1:])
            else:
                kwargs = dict(kwargs)
                hidden, rest = kwargs.pop("hidden_states"), ()
            kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            calls[index].append((rest, kwargs))
            if index == 0:
                first_inputs.append(hidden)
            if index == len(layers) - 1:
                raise _StopForward

        return hook

    handles = [
        layer.register_forward_pre_hook(make_hook(i), with_kwargs=True)
        for i, layer in enumerate(layers)
    ]
    try:
        for start in range(0, len(calibration_ids), batch_size):
            batch = calibration_ids[start : start + batch_size].to(device)
            try:
                model(input_ids=batch, use_cache=False)
            except _StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()
    return first_inputs, calls


def run_layer(layer: nn.Module, hidden: Tensor, call: tuple[tuple, dict]) -> Tensor:
    """Call a decoder layer as the model did; its output may be a tensor or a tuple."""
    rest, kwargs = call
    out = layer(hidden, *rest, **kwargs)
    return out[0] if isinstance(out, tuple | list) else out


@torch.no_grad()
def prune_layerwise(
    model: nn.Module,
    calibration_ids: Tensor,
    make_collector: Callable[[nn.Module], Collector],
    prune_linear: Callable[[str, nn.Module, Collector], None],
    *,
    batch_size: int,
    device: torch.device,
) -> None:
    """Gather each layer's linear inputs from the already-pruned layers below it.

    For layer i: hooks on its linears feed every input batch to its collector's
    ``add_batch``; the dense layer runs on the stored hidden states; ``prune_linear``
    then prunes each linear from its collector; and the pruned layer is re-run to
    give layer i+1 its inputs (the sequential scheme of Wanda and SparseGPT).
    """
    layers, family = decoder_layers(model), family_of(model)
    hidden, calls = capture_layer_calls(model, calibration_ids, batch_size, device)
    for i, layer in enumerate(tqdm(layers, desc="pruning layers", file=sys.stderr, mininterval=10)):
        linears = {
            f"layers.{i}.{name}": module
            for name, module in block_projections(layer, family).items()
        }
        collectors = {name: make_collector(module) for name, module in linears.items()}
        with _feeding(linears, collectors):
            for batch_hidden, call in zip(hidden, calls[i], strict=True):
                run_layer(layer, batch_hidden, call)
        for name, module in linears.items():
            prune_linear(name, module, collectors[name])
        del collectors
        if i + 1 < len(layers):
            hidden = [run_layer(layer, h, c) for h, c in zip(hidden, calls[i], strict=True)]


@contextlib.contextmanager
def _feeding(modules: dict[str, nn.Module], collectors: dict[str, Collector]) -> Iterator[None]:
    """While open, every call of ``modules[name]`` feeds its input to ``collectors[name]``."""
    handles = [
        module.register_forward_hook(
            lambda mod, args, out, collector=collectors[name]: collector.add_batch(args[0])
        )
        for name, module in modules.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class ColumnSquares:
    """Running per-input-column sum of squares, the quantity Wanda's norm needs."""

    def __init__(self, layer: nn.Module):
        self.sum_sq = torch.zeros(
            input_width(layer), dtype=torch.float64, device=layer.weight.device
        )

    def add_batch(self, inp: Tensor) -> None:
        x = inp.detach().reshape(-1, self.sum_sq.shape[0]).float()
        self.sum_sq += x.pow(2).sum(0).double()

    def norm(self) -> Tensor:
        return self.sum_sq.sqrt().float()


def wanda_act_norms(
    model: nn.Module, calibration_ids: Tensor, *, batch_size: int, device: torch.device
) -> dict[str, Tensor]:
    """Per-input-column activation norms of every prunable linear on the model as is.

    Collected in one forward pass (no pruning in between); used to check and
    inspect the statistics Wanda sees.
    """
    linears = prunable_linears(model)
    stats = {name: ColumnSquares(module) for name, module in linears.items()}
    with _feeding(linears, stats), torch.no_grad():
        for start in range(0, len(calibration_ids), batch_size):
            model(
                input_ids=calibration_ids[start : start + batch_size].to(device),
                use_cache=False,
            )
    return {name: s.norm() for name, s in stats.items()}
