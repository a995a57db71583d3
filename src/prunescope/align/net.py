"""V one-hidden-layer ALIGN networks stored as stacked tensors and trained together.

Each variant v computes z = W2 @ relu(W1 @ (C0 @ x) + b1) + b2 with its own parameters; all are
held in tensors with a leading variant axis: C0 (V, d, d_in), W1 (V, h, d), b1 (V, h),
W2 (V, C, h), b2 (V, C). The hidden pre-activations are computed as (W1 @ C0) @ x, the same map.
Fine-tuning dozens of pruned copies of one net is far faster on CPU as one batched computation
than as separate loops, and because the loss is the sum of the variants' own losses and Adam is
element-wise, every variant follows exactly the path it would follow alone.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from prunescope.artifacts import damaged, read_safetensors, read_safetensors_header
from prunescope.io import atomic_path

log = logging.getLogger("prunescope")

PARAMETER_NAMES = ("C0", "W1", "b1", "W2", "b2")
NETS_FILE = "ALIGN nets file"
_SINGLE_NET_NDIM = {"C0": 2, "W1": 2, "b1": 1, "W2": 2, "b2": 1}


class AlignNets(torch.nn.Module):
    """V stacked networks; ``forward`` maps a shared batch x (B, d_in) to logits (V, B, C)."""

    def __init__(
        self,
        C0: torch.Tensor,
        W1: torch.Tensor,
        b1: torch.Tensor,
        W2: torch.Tensor,
        b2: torch.Tensor,
    ) -> None:
        super().__init__()
        _check_stacked_shapes(
            {"C0": C0.shape, "W1": W1.shape, "b1": b1.shape, "W2": W2.shape, "b2": b2.shape}
        )
        for name, value in zip(PARAMETER_NAMES, (C0, W1, b1, W2, b2), strict=True):
            tensor = value.detach().to(torch.float32).clone().contiguous()
            self.register_parameter(name, torch.nn.Parameter(tensor))

    @property
    def variants(self) -> int:
        """Number of stacked networks V."""
        return self.W1.shape[0]

    @classmethod
    def initialise(cls, variants: int, d_in: int, classes: int, seed: int) -> AlignNets:
        """Fresh nets with h = d = d_in, each tensor drawn like ``torch.nn.Linear``'s default.

        Linear's kaiming-uniform(a=sqrt(5)) weights and its biases are both uniform on
        +-1/sqrt(fan_in). Variants are drawn one after another from one generator seeded with
        ``seed``, in the order C0, W1, b1, W2, b2.
        """
        if variants < 1 or d_in < 1 or classes < 2:
            raise ValueError(
                f"need variants >= 1, d_in >= 1 and classes >= 2, "
                f"got {variants}, {d_in}, {classes}."
            )
        generator = torch.Generator().manual_seed(seed)
        d = h = d_in
        shapes_and_fan_in = {
            "C0": ((d, d_in), d_in),
            "W1": ((h, d), d),
            "b1": ((h,), d),
            "W2": ((classes, h), h),
            "b2": ((classes,), h),
        }
        nets = []
        for _ in range(variants):
            net = {}
            for name, (shape, fan_in) in shapes_and_fan_in.items():
                bound = 1.0 / math.sqrt(fan_in)
                net[name] = torch.empty(shape).uniform_(-bound, bound, generator=generator)
            nets.append(net)
        return cls(**{name: torch.stack([net[name] for net in nets]) for name in PARAMETER_NAMES})

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits (V, B, C) of every variant for the shared batch x (B, d_in)."""
        return _forward_parts(self, torch.as_tensor(x, dtype=torch.float32))[-1].transpose(1, 2)

    def feature_weights(self) -> torch.Tensor:
        """C1 = W1 @ C0, the feature-space weights, shape (V, h, d_in)."""
        return torch.bmm(self.W1, self.C0)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> AlignNets:
        """Nets from arrays keyed C0, W1, b1, W2, b2; single-net arrays get a variant axis."""
        missing = [name for name in PARAMETER_NAMES if name not in arrays]
        if missing:
            raise ValueError(f"arrays lack the parameters {missing}.")
        single = [np.ndim(arrays[name]) == _SINGLE_NET_NDIM[name] for name in PARAMETER_NAMES]
        if any(single) and not all(single):
            raise ValueError("arrays mix single-net and stacked parameters.")
        tensors = {name: torch.as_tensor(np.asarray(arrays[name])) for name in PARAMETER_NAMES}
        if all(single):
            tensors = {name: tensor.unsqueeze(0) for name, tensor in tensors.items()}
        return cls(**tensors)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Stacked parameters as float64 numpy arrays with the variant axis first."""
        return {
            name: getattr(self, name).detach().cpu().numpy().astype(np.float64)
            for name in PARAMETER_NAMES
        }

    def variant(self, v: int) -> dict[str, np.ndarray]:
        """Parameters of variant ``v`` as single-net float64 arrays."""
        if not -self.variants <= v < self.variants:
            raise ValueError(f"variant index {v} out of range for {self.variants} variants.")
        return {name: array[v] for name, array in self.to_arrays().items()}

    @classmethod
    def stack(cls, nets: Sequence[dict[str, np.ndarray]]) -> AlignNets:
        """Stack single-net array dicts (all the same shapes) into one AlignNets."""
        if not nets:
            raise ValueError("stack needs at least one network.")
        return cls.from_arrays(
            {name: np.stack([np.asarray(net[name]) for net in nets]) for name in PARAMETER_NAMES}
        )

    def repeat(self, copies: int) -> AlignNets:
        """``copies`` identical copies of this single net (V must be 1)."""
        if self.variants != 1 or copies < 1:
            raise ValueError(
                f"repeat needs a single net and copies >= 1, got V={self.variants}, "
                f"copies={copies}."
            )
        return AlignNets(
            **{
                name: getattr(self, name).detach().expand(copies, *getattr(self, name).shape[1:])
                for name in PARAMETER_NAMES
            }
        )


def train_nets(
    nets: AlignNets,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    masks: np.ndarray | torch.Tensor | None = None,
    callback: Callable[[int, AlignNets], None] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train all variants in place with Adam on the same shuffled mini-batches.

    Loss is the sum over variants of each one's mean cross-entropy, so each variant's gradient
    is its own. Batches follow one permutation per epoch from ``torch.Generator(seed)``; the
    last batch of an epoch may be short. ``masks`` (bool, (V, h, d), True = kept) zero W1's
    pruned entries before training and after every step, so they stay exactly zero.
    ``callback(epoch, nets)`` runs with epoch 0 before training and after each epoch.
    Returns one record per epoch: {"epoch": e, "train_loss": [mean batch loss per variant]}.
    """
    x_t, y_t = _as_inputs(x, y, nets)
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need epochs >= 0, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}."
        )
    keep = None if masks is None else _as_mask(masks, nets)
    generator = torch.Generator().manual_seed(seed)
    n = len(x_t)
    batches_per_epoch = math.ceil(n / batch_size)
    records = []
    flat = _share_flat_storage(nets)
    try:
        optimiser = _FlatAdam(flat, lr=lr)
        if keep is not None:
            nets.W1.data.mul_(keep)
        if callback is not None:
            callback(0, nets)
        for epoch in tqdm(
            range(1, epochs + 1), desc="train", mininterval=5, disable=not progress, leave=False
        ):
            order = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros(nets.variants)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                per_variant, gradients = _loss_and_gradients(nets, x_t[index], y_t[index])
                if keep is not None:
                    gradients["W1"].mul_(keep)
                optimiser.step(torch.cat([gradients[name].reshape(-1) for name in PARAMETER_NAMES]))
                if keep is not None:
                    nets.W1.data.mul_(keep)
                loss_sum += per_variant
            record = {"epoch": epoch, "train_loss": (loss_sum / batches_per_epoch).tolist()}
            records.append(record)
            log.debug("epoch %d train loss %s", epoch, record["train_loss"])
            if callback is not None:
                callback(epoch, nets)
    finally:
        for parameter in nets.parameters():
            parameter.data = parameter.data.clone()
    return records


class _FlatAdam:
    """torch.optim.Adam's update (default betas and eps, no weight decay) on one flat tensor.

    At these sizes torch.optim's per-parameter bookkeeping costs more than the update itself;
    the tests check this against torch.optim.Adam.
    """

    def __init__(
        self, parameter: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.parameter, self.lr, self.betas, self.eps = parameter, lr, betas, eps
        self.first_moment = torch.zeros_like(parameter)
        self.second_moment = torch.zeros_like(parameter)
        self.steps = 0

    @torch.no_grad()
    def step(self, gradient: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        self.first_moment.lerp_(gradient, 1 - beta1)
        self.second_moment.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        denominator = (self.second_moment.sqrt() / bias_correction2_sqrt).add_(self.eps)
        self.parameter.addcdiv_(self.first_moment, denominator, value=-self.lr / bias_correction1)


def _share_flat_storage(nets: AlignNets) -> torch.Tensor:
    """Make every parameter a view into one flat tensor (in PARAMETER_NAMES order); return it."""
    parameters = [getattr(nets, name) for name in PARAMETER_NAMES]
    flat = torch.cat([parameter.detach().reshape(-1) for parameter in parameters])
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.data = flat[offset : offset + size].view_as(parameter)
        offset += size
    return flat


@torch.no_grad()
def evaluate_nets(
    nets: AlignNets,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    batch_size: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy of every variant on (x, y), each float64 (V,)."""
    x_t, y_t = _as_inputs(x, y, nets)
    loss_sum = torch.zeros(nets.variants, dtype=torch.float64)
    correct = torch.zeros(nets.variants, dtype=torch.float64)
    for start in range(0, len(x_t), batch_size):
        logits = _forward_parts(nets, x_t[start : start + batch_size])[-1]
        labels = y_t[start : start + batch_size]
        loss_sum += _log_probabilities_and_loss(logits, labels)[1].double() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum(dim=1).double()
    return (loss_sum / len(x_t)).numpy(), (correct / len(x_t)).numpy()


def save_nets(
    path: str | os.PathLike,
    nets: AlignNets,
    metadata: dict[str, str] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the stacked parameters (float32), optional string metadata and ``extra`` tensors
    (e.g. pruning masks, which :func:`load_nets` leaves out) as safetensors."""
    from safetensors.torch import save_file

    tensors = {name: getattr(nets, name).detach().contiguous() for name in PARAMETER_NAMES}
    tensors.update(extra or {})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_nets(path: str | os.PathLike) -> AlignNets:
    """Read nets written by :func:`save_nets`; a damaged file raises an error naming it."""
    return nets_from_tensors(read_safetensors(path, NETS_FILE)[0], path)


def nets_from_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> AlignNets:
    """The nets in the tensors read from ``path``, which must hold consistent parameters."""
    missing = [name for name in PARAMETER_NAMES if name not in tensors]
    if missing:
        raise damaged(NETS_FILE, path, f"lacks the parameters {missing}, so it is incomplete")
    try:
        return AlignNets(**{name: tensors[name] for name in PARAMETER_NAMES})
    except ValueError as err:
        raise damaged(
            NETS_FILE, path, f"holds parameters that do not fit together ({err})"
        ) from err


def load_nets_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored by :func:`save_nets` (empty when none was given)."""
    return read_safetensors_header(path, NETS_FILE)[1]


def _forward_parts(nets: AlignNets, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """C1, pre-activations and hidden units (V, h, B), logits (V, C, B).

    Going through C1 = W1 @ C0 turns the per-variant products with the shared batch into one
    matrix product; keeping the batch axis last makes every product below contiguous.
    """
    variants, hidden_units, _ = nets.W1.shape
    C1 = torch.bmm(nets.W1, nets.C0)
    pre = torch.addmm(nets.b1.reshape(-1, 1), C1.reshape(variants * hidden_units, -1), x.T).view(
        variants, hidden_units, len(x)
    )
    hidden = torch.relu(pre)
    logits = torch.baddbmm(nets.b2.unsqueeze(2), nets.W2, hidden)
    return C1, pre, hidden, logits


def _log_probabilities_and_loss(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log-softmax over classes of logits (V, C, B) and each variant's mean cross-entropy (V,)."""
    log_p = torch.log_softmax(logits, dim=1)
    label_index = labels.view(1, 1, -1).expand(logits.shape[0], 1, -1)
    return log_p, -log_p.gather(1, label_index).mean(dim=(1, 2))


@torch.no_grad()
def _loss_and_gradients(
    nets: AlignNets, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Each variant's mean cross-entropy (V,) and its gradients, by hand.

    Autograd costs more than the arithmetic at these sizes; the tests check these gradients
    against autograd through an unstacked reference model.
    """
    C1, pre, hidden, logits = _forward_parts(nets, x)
    log_p, loss = _log_probabilities_and_loss(logits, y)
    # d loss / d logits = (softmax - one_hot(y)) / B
    label_index = y.view(1, 1, -1).expand(logits.shape[0], 1, -1)
    minus_one = torch.full((1, 1, 1), -1.0).expand_as(label_index)
    g_logits = log_p.exp_().scatter_add_(1, label_index, minus_one).div_(len(x))
    g_pre = torch.bmm(nets.W2.transpose(1, 2), g_logits)
    # relu's derivative (0 at 0, as autograd takes it) applied in one fused op.
    g_pre = torch.ops.aten.threshold_backward(g_pre, pre, 0)
    variants, hidden_units, batch = g_pre.shape
    g_C1 = torch.mm(g_pre.view(variants * hidden_units, batch), x).view_as(C1)
    gradients = {
        "C0": torch.bmm(nets.W1.transpose(1, 2), g_C1),
        "W1": torch.bmm(g_C1, nets.C0.transpose(1, 2)),
        "b1": g_pre.sum(dim=2),
        "W2": torch.bmm(g_logits, hidden.transpose(1, 2)),
        "b2": g_logits.sum(dim=2),
    }
    return loss, gradients


def _as_inputs(x, y, nets: AlignNets) -> tuple[torch.Tensor, torch.Tensor]:
    x_t = torch.as_tensor(x, dtype=torch.float32)
    y_t = torch.as_tensor(y, dtype=torch.int64)
    d_in = nets.C0.shape[2]
    if x_t.ndim != 2 or x_t.shape[1] != d_in:
        raise ValueError(f"x must have shape (n, {d_in}), got {tuple(x_t.shape)}.")
    if y_t.shape != (len(x_t),):
        raise ValueError(f"y must have shape ({len(x_t)},), got {tuple(y_t.shape)}.")
    if len(x_t) == 0:
        raise ValueError("x holds no samples.")
    return x_t, y_t


def _as_mask(masks, nets: AlignNets) -> torch.Tensor:
    keep = torch.as_tensor(masks)
    if keep.dtype != torch.bool:
        raise ValueError(f"masks must be boolean, got dtype {keep.dtype}.")
    if keep.shape != nets.W1.shape:
        raise ValueError(
            f"masks must have W1's shape {tuple(nets.W1.shape)}, got {tuple(keep.shape)}."
        )
    return keep.to(torch.float32)


def _check_stacked_shapes(shapes: dict[str, torch.Size]) -> None:
    if any(len(shapes[name]) != _SINGLE_NET_NDIM[name] + 1 for name in PARAMETER_NAMES):
        raise ValueError(
            "stacked parameters need a leading variant axis: C0, W1, W2 3-D and b1, b2 2-D, "
            f"got { ({name: tuple(shape) for name, shape in shapes.items()}) }."
        )
    variants, d, d_in = shapes["C0"]
    _, h, _ = shapes["W1"]
    _, classes, _ = shapes["W2"]
    expected = {
        "C0": (variants, d, d_in),
        "W1": (variants, h, d),
        "b1": (variants, h),
        "W2": (variants, classes, h),
        "b2": (variants, classes),
    }
    wrong = {name: tuple(shape) for name, shape in shapes.items() if tuple(shape) != expected[name]}
    if wrong:
        raise ValueError(f"parameter shapes disagree (V={variants}, d={d}, h={h}): {wrong}.")
