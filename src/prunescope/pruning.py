"""One-shot pruning of the linear layers inside the decoder blocks of a causal LM.

The rules follow section 3.1 of "How Pruning Reshapes Features": global
magnitude pruning and Wanda (Sun et al. 2024), plus SparseGPT (Frantar &
Alistarh 2023) and the N:M variants of all three. Embeddings and ``lm_head``
are never touched: only :func:`prunable_linears` are pruned.

The maths (scores and masks) are small pure functions on tensors; the
plumbing that gathers calibration inputs layer by layer, with each layer fed
the output of the already-pruned layers before it, lives in
:func:`prune_layerwise`. Masks are boolean *keep* masks (True = weight stays).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from prunescope.architectures import block_projections, family_of, input_width, weight_matrix
from prunescope.errors import UserInputError
from prunescope.models import decoder_layers, prunable_linears

METHODS = ("magnitude", "wanda", "sparsegpt")
GRANULARITIES = ("row", "matrix")


# --------------------------------------------------------------------------- masks


def count_to_prune(numel: int, sparsity: float) -> int:
    """How many of ``numel`` weights a group loses: ``round(sparsity * numel)``.

    Every rule uses this one rounding so that achieved sparsities agree with
    the requested one to within one weight per comparison group.
    """
    return int(round(sparsity * numel))


def _stable_prune_mask(scores: Tensor, n_prune: int) -> Tensor:
    """Keep-mask over the last dim that drops the ``n_prune`` lowest scores.

    Ties go to the lower index (stable sort), so the count is exact and the
    result is reproducible.
    """
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune > 0:
        order = torch.sort(scores, dim=-1, stable=True).indices[..., :n_prune]
        keep.scatter_(-1, order, False)
    return keep


def row_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Per output row, keep the top ``1 - sparsity`` fraction of scores.

    Wanda's default comparison group (Sun et al. 2024, "per-output"), which
    section 3.1 of the paper describes as "for each row of each weight matrix".
    """
    return _stable_prune_mask(scores, count_to_prune(scores.shape[-1], sparsity))


def matrix_mask(scores: Tensor, sparsity: float) -> Tensor:
    """One threshold for the whole matrix (Wanda with ``granularity: matrix``)."""
    flat = scores.reshape(-1)
    return _stable_prune_mask(flat, count_to_prune(flat.numel(), sparsity)).view_as(scores)


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """N:M semi-structured mask: in every run of ``m`` consecutive inputs of a
    row, drop the ``n`` lowest scores (2:4 drops 2 of every 4).

    The pattern sparse tensor cores accelerate; Wanda and SparseGPT both offer it.
    """
    if not 0 < n < m:
        raise ValueError(f"N:M pattern {n}:{m} needs 0 < n < m")
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M pruning needs in_features ({cols}) divisible by m ({m})")
    groups = scores.reshape(rows, cols // m, m)
    return _stable_prune_mask(groups, n).reshape(rows, cols)


def wanda_scores(weight: Tensor, act_norm: Tensor) -> Tensor:
    """Wanda importance ``|W_ij| * ||X_j||_2`` (Sun et al. 2024, eq. 1).

    ``act_norm`` is the l2 norm over all calibration tokens of input column j,
    so weights that are large *and* fed large activations survive.
    """
    if act_norm.shape != (weight.shape[1],):
        raise ValueError(
            f"act_norm has shape {tuple(act_norm.shape)} but the weight has "
            f"{weight.shape[1]} input columns"
        )
    return weight.detach().float().abs() * act_norm.float().to(weight.device).unsqueeze(0)


def magnitude_mask_global(weights: list[Tensor], sparsity: float) -> list[Tensor]:
    """Global magnitude pruning: one threshold over all given weights.

    Section 3.1 of the paper: "a global threshold is computed over all linear
    layer weights, and weights below this threshold are zeroed". Exactly
    ``round(sparsity * total)`` weights are pruned; ties at the threshold go
    to the earlier matrix, then the earlier flat index. The threshold comes
    from a radix select over the matrices one at a time, so no concatenated
    copy of a multi-billion-weight model is ever built.
    """
    total = sum(w.numel() for w in weights)
    n_prune = count_to_prune(total, sparsity)
    if n_prune == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    threshold, ties_left = _kth_smallest_abs(weights, n_prune)
    masks = []
    for w in weights:
        a = _abs32(w)
        prune = a < threshold
        if ties_left > 0:
            tied = a == threshold
            n_tied = int(tied.sum())
            if n_tied > ties_left:
                flat = tied.reshape(-1)
                tied = (flat & (flat.cumsum(0) <= ties_left)).view_as(a)
            ties_left -= min(n_tied, ties_left)
            prune |= tied
        masks.append(~prune)
    return masks


def _abs32(weight: Tensor) -> Tensor:
    return weight.detach().abs().float()


def _kth_smallest_abs(weights: list[Tensor], k: int) -> tuple[Tensor, int]:
    """The ``k``-th smallest (1-based) ``|w|`` over all weights, and its rank
    among the weights equal to it (how many of those ties to prune).

    Radix select on the int32 view of the float32 magnitudes, which orders
    non-negative floats like their values: one histogram of the high 16 bits,
    then one of the low 16 bits within the chosen high bucket.
    """
    prefix = 0
    for high_pass in (True, False):
        hist = torch.zeros(1 << 16, dtype=torch.int64)
        for w in weights:
            bits = _abs32(w).reshape(-1).view(torch.int32)
            digits = bits >> 16 if high_pass else bits[(bits >> 16) == prefix] & 0xFFFF
            hist += torch.bincount(digits, minlength=1 << 16).cpu()
        cumulative = hist.cumsum(0)
        digit = int(torch.searchsorted(cumulative, torch.tensor(k)))
        k -= int(cumulative[digit - 1]) if digit > 0 else 0
        prefix = (prefix << 16) | digit
    value = torch.tensor([prefix], dtype=torch.int32).view(torch.float32)[0]
    return value.to(weights[0].device), k


# --------------------------------------------------------------------------- SparseGPT


class SparseGPT:
    """SparseGPT for one linear layer (Frantar & Alistarh 2023, Algorithm 1).

    Written after IST-DASLab/sparsegpt: :meth:`add_batch` accumulates the
    layer-wise Hessian ``H = 2/n X^T X`` of the reconstruction loss
    ``||W X - W' X||^2``; :meth:`prune` walks the columns in blocks, chooses
    the mask of each block adaptively from ``w^2 / [H^-1]_jj^2`` (the OBS
    saliency), zeroes the chosen weights and spreads their error over the
    not-yet-visited columns through the Cholesky factor of ``H^-1``.
    """

    def __init__(self, layer: nn.Module):
        self.layer = layer
        self.columns = input_width(layer)
        self.H = torch.zeros(self.columns, self.columns, device=layer.weight.device)
        self.nsamples = 0

    def add_batch(self, inp: Tensor) -> None:
        """Fold a batch of layer inputs (``[..., in_features]``) into the running mean Hessian."""
        x = inp.detach().reshape(-1, self.columns).float()
        n = x.shape[0]
        self.H *= self.nsamples / (self.nsamples + n)
        self.nsamples += n
        x = math.sqrt(2 / self.nsamples) * x
        self.H += x.t() @ x

    def prune(
        self,
        sparsity: float,
        blocksize: int = 128,
        percdamp: float = 0.01,
        nm: tuple[int, int] | None = None,
    ) -> None:
        """Prune and update the layer's weight in place (as ``(out, in)``, so a GPT-2
        ``Conv1D`` is pruned along its inputs too).

        Unstructured: each block of ``blocksize`` columns loses its share of
        ``round(sparsity * numel)`` weights (shares rounded cumulatively so the
        matrix total is exact). N:M: every run of ``m`` columns of a row loses
        its ``n`` weights of lowest saliency, chosen when the run is reached.
        """
        if self.nsamples == 0:
            raise ValueError("SparseGPT.prune called before any add_batch: no calibration inputs")
        weight = weight_matrix(self.layer)
        W = weight.clone().float()
        rows, cols = W.shape
        if nm is not None:
            n, m = nm
            if cols % m or blocksize % m:
                raise ValueError(
                    f"N:M {n}:{m} needs in_features ({cols}) and blocksize ({blocksize}) "
                    f"divisible by m"
                )
        H = self.H
        del self.H
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        idx = torch.arange(cols, device=H.device)
        H[idx, idx] += percdamp * torch.mean(torch.diag(H))
        Hinv = self._inverse_cholesky(H, percdamp)

        pruned_so_far = 0
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1 = W[:, i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            d1 = torch.diag(Hinv1)
            if nm is None:
                target = count_to_prune(rows * i2, sparsity) - pruned_so_far
                saliency = (W1**2 / d1.unsqueeze(0) ** 2).reshape(-1)
                mask1 = ~_stable_prune_mask(saliency, target).view_as(W1)
                pruned_so_far += target
            else:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            for i in range(i2 - i1):
                w = W1[:, i]
                d = Hinv1[i, i]
                if nm is not None and i % nm[1] == 0:
                    group = W1[:, i : i + nm[1]] ** 2 / d1[i : i + nm[1]].unsqueeze(0) ** 2
                    mask1[:, i : i + nm[1]] = ~_stable_prune_mask(group, nm[0])
                # masked_fill, not boolean indexing: indexing makes a GPU wait for the host
                # once per column.
                q = w.masked_fill(mask1[:, i], 0)
                Q1[:, i] = q
                err = (w - q) / d
                W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
                Err1[:, i] = err
            W[:, i1:i2] = Q1
            W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
        weight.copy_(W.to(weight.dtype))

    @staticmethod
    def _inverse_cholesky(H: Tensor, percdamp: float) -> Tensor:
        """Upper Cholesky factor of ``H^-1``, whose rows give the OBS updates."""
        L, info = torch.linalg.cholesky_ex(H)
        if info == 0:
            L, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
        if info != 0:
            raise RuntimeError(
                f"SparseGPT Hessian is not positive definite after dampening with "
                f"percdamp={percdamp}; raise percdamp or use more calibration windows"
            )
        return L


# --------------------------------------------------------------------------- plumbing


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
    make_collector: Callable[[nn.Module], object],
    collect: Callable[[object, Tensor], None],
    prune_linear: Callable[[str, nn.Module, object], None],
    *,
    batch_size: int,
    device: torch.device,
) -> None:
    """Gather each layer's linear inputs from the already-pruned layers below it.

    For layer i: hooks on its linears feed every input batch to ``collect``;
    the dense layer runs on the stored hidden states; ``prune_linear`` then
    prunes each linear from its collector; and the pruned layer is re-run to
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

        def make_hook(collector):
            return lambda module, args, output: collect(collector, args[0])

        handles = [
            module.register_forward_hook(make_hook(collectors[name]))
            for name, module in linears.items()
        ]
        try:
            for batch_hidden, call in zip(hidden, calls[i], strict=True):
                run_layer(layer, batch_hidden, call)
        finally:
            for handle in handles:
                handle.remove()
        for name, module in linears.items():
            prune_linear(name, module, collectors[name])
        del collectors
        if i + 1 < len(layers):
            hidden = [run_layer(layer, h, c) for h, c in zip(hidden, calls[i], strict=True)]


class _ColumnSquares:
    """Running per-input-column sum of squares, the quantity Wanda's norm needs."""

    def __init__(self, layer: nn.Module):
        self.sum_sq = torch.zeros(
            input_width(layer), dtype=torch.float64, device=layer.weight.device
        )

    def add(self, inp: Tensor) -> None:
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
    stats = {name: _ColumnSquares(module) for name, module in prunable_linears(model).items()}
    handles = [
        module.register_forward_hook(lambda mod, args, out, s=stats[name]: s.add(args[0]))
        for name, module in prunable_linears(model).items()
    ]
    try:
        with torch.no_grad():
            for start in range(0, len(calibration_ids), batch_size):
                model(
                    input_ids=calibration_ids[start : start + batch_size].to(device),
                    use_cache=False,
                )
    finally:
        for handle in handles:
            handle.remove()
    return {name: s.norm() for name, s in stats.items()}


# --------------------------------------------------------------------------- entry point


def measure_sparsity(model: nn.Module) -> tuple[float, dict[str, dict]]:
    """Fraction of exact zeros over all prunable linears, and per matrix."""
    per_matrix = {}
    zeros_total = numel_total = 0
    for name, module in prunable_linears(model).items():
        weight = weight_matrix(module)
        zeros = int((weight == 0).sum())
        numel = weight.numel()
        per_matrix[name] = {
            "shape": list(weight.shape),  # (out, in), also for a Conv1D stored (in, out)
            "sparsity": zeros / numel,
            "zeros": zeros,
            "numel": numel,
        }
        zeros_total += zeros
        numel_total += numel
    return (zeros_total / numel_total if numel_total else 0.0), per_matrix


def _check_arguments(model, method, sparsity, calibration_ids, granularity, nm, batch_size):
    if method not in METHODS:
        raise ValueError(f"pruning method {method!r} is not one of {list(METHODS)}")
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity {sparsity} is outside [0, 1)")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r} is not one of {list(GRANULARITIES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be at least 1")
    if nm is not None:
        if len(nm) != 2 or not 0 < nm[0] < nm[1]:
            raise ValueError(f"nm {nm!r} must be a pair (n, m) with 0 < n < m")
        if not math.isclose(nm[0] / nm[1], sparsity, abs_tol=1e-9):
            raise ValueError(
                f"nm {nm[0]}:{nm[1]} prunes {nm[0] / nm[1]:g} of the weights but sparsity "
                f"is {sparsity}; pass sparsity = n/m"
            )
        for name, module in prunable_linears(model).items():
            if input_width(module) % nm[1]:
                raise UserInputError(
                    f"{nm[0]}:{nm[1]} pruning splits each row's inputs into groups of {nm[1]}, "
                    f"but {name} has {input_width(module)} inputs; leave the _{nm[0]}of{nm[1]} "
                    "method out of this model's grid"
                )
    if method == "magnitude":
        return
    if calibration_ids is None:
        raise ValueError(f"method {method!r} needs calibration_ids, got None")
    if calibration_ids.dim() != 2 or calibration_ids.numel() == 0:
        raise ValueError(
            f"calibration_ids must be a non-empty [n_windows, context] tensor, "
            f"got shape {tuple(calibration_ids.shape)}"
        )
    if calibration_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"calibration_ids must hold integer token ids, got {calibration_ids.dtype}"
        )
    vocab = model.get_input_embeddings().num_embeddings
    if int(calibration_ids.min()) < 0 or int(calibration_ids.max()) >= vocab:
        raise ValueError(f"calibration_ids hold token ids outside the vocabulary [0, {vocab})")


def prune_model(
    model: nn.Module,
    method: str,
    sparsity: float,
    calibration_ids: Tensor | None,
    *,
    granularity: str = "row",
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    batch_size: int = 8,
    device: torch.device | None = None,
) -> dict:
    """Prune every linear in the decoder blocks in place and report the result.

    ``magnitude`` uses one global threshold (or, with ``nm``, drops the n
    smallest ``|w|`` of every m); ``wanda`` compares ``|W| * ||X||`` per row
    (``granularity="row"``), per matrix, or per N:M group; ``sparsegpt``
    reconstructs each layer with OBS updates. Calibration inputs for the last
    two are gathered layer by layer through the already-pruned layers.
    ``device`` is where calibration runs (the model is moved there); None
    keeps the model's own device. The report's ``granularity`` names the
    comparison group actually used.
    """
    _check_arguments(model, method, sparsity, calibration_ids, granularity, nm, batch_size)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    nm = tuple(nm) if nm is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if method == "magnitude":
                group = _prune_magnitude(model, sparsity, nm)
            elif method == "wanda":
                group = _prune_wanda(
                    model, sparsity, calibration_ids, granularity, nm, batch_size, device
                )
            else:
                group = _prune_sparsegpt(
                    model, sparsity, calibration_ids, nm, blocksize, percdamp, batch_size, device
                )
    finally:
        model.train(was_training)
    overall, per_matrix = measure_sparsity(model)
    uses_calibration = method != "magnitude"
    return {
        "method": method,
        "sparsity_requested": sparsity,
        "granularity": group,
        "nm": list(nm) if nm is not None else None,
        "overall_sparsity": overall,
        "per_matrix": per_matrix,
        "n_calibration_windows": int(calibration_ids.shape[0]) if uses_calibration else None,
        "calibration_context": int(calibration_ids.shape[1]) if uses_calibration else None,
    }


def _apply_mask(module: nn.Module, keep: Tensor) -> None:
    """Zero what ``keep`` (``(out, in)``) drops, through the view a Conv1D needs."""
    weight = weight_matrix(module)
    weight.mul_(keep.to(weight.dtype))


def _prune_magnitude(model: nn.Module, sparsity: float, nm: tuple[int, int] | None) -> str:
    linears = list(prunable_linears(model).values())
    if nm is not None:
        for module in linears:
            _apply_mask(module, nm_mask(_abs32(weight_matrix(module)), *nm))
        return "n:m"
    masks = magnitude_mask_global([weight_matrix(m) for m in linears], sparsity)
    for module, keep in zip(linears, masks, strict=True):
        _apply_mask(module, keep)
    return "global"


def _prune_wanda(model, sparsity, calibration_ids, granularity, nm, batch_size, device) -> str:
    def prune_linear(name: str, module: nn.Module, stats: _ColumnSquares) -> None:
        scores = wanda_scores(weight_matrix(module), stats.norm())
        if nm is not None:
            keep = nm_mask(scores, *nm)
        elif granularity == "row":
            keep = row_mask(scores, sparsity)
        else:
            keep = matrix_mask(scores, sparsity)
        _apply_mask(module, keep)

    prune_layerwise(
        model,
        calibration_ids,
        _ColumnSquares,
        lambda stats, inp: stats.add(inp),
        prune_linear,
        batch_size=batch_size,
        device=device,
    )
    return "n:m" if nm is not None else granularity


def _prune_sparsegpt(
    model, sparsity, calibration_ids, nm, blocksize, percdamp, batch_size, device
) -> str:
    def prune_linear(name: str, module: nn.Module, gpt: SparseGPT) -> None:
        try:
            gpt.prune(sparsity, blocksize=blocksize, percdamp=percdamp, nm=nm)
        except RuntimeError as err:
            raise RuntimeError(f"{name}: {err}") from err

    prune_layerwise(
        model,
        calibration_ids,
        SparseGPT,
        lambda gpt, inp: gpt.add_batch(inp),
        prune_linear,
        batch_size=batch_size,
        device=device,
    )
    return "n:m" if nm is not None else "block"
