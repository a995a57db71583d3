"""SparseGPT (Frantar & Alistarh 2023): one-shot pruning of a linear layer with OBS updates."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from prunescope.architectures import input_width, weight_matrix
from prunescope.pruning.masks import count_to_prune, stable_prune_mask


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
        self.dead: Tensor | None = None

    def add_batch(self, inp: Tensor) -> None:
        """Fold a batch of layer inputs (``[..., in_features]``) into the running mean Hessian."""
        x = inp.detach().reshape(-1, self.columns).float()
        n = x.shape[0]
        self.H *= self.nsamples / (self.nsamples + n)
        self.nsamples += n
        x = math.sqrt(2 / self.nsamples) * x
        self.H += x.t() @ x

    def use_hessian(self, hessian: Tensor) -> None:
        """Prune by ``hessian`` instead of the calibration Hessian gathered so far (the
        feature-aware methods: :mod:`prunescope.pruning.feature`). Which inputs never fired
        is still read from the calibration Hessian: those weights go, whatever ``hessian``
        says of their columns."""
        self.dead = torch.diag(self.H) == 0
        self.H = hessian.to(self.H.device, torch.float32)

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
        if nm is not None and (cols % nm[1] or blocksize % nm[1]):
            raise ValueError(
                f"N:M {nm[0]}:{nm[1]} needs in_features ({cols}) and blocksize ({blocksize}) "
                f"divisible by m"
            )
        Hinv = self._dampened_inverse(W, percdamp)

        pruned_so_far = 0
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1 = W[:, i1:i2].clone()
            Hinv1 = Hinv[i1:i2, i1:i2]
            if nm is None:
                target = count_to_prune(rows * i2, sparsity) - pruned_so_far
                saliency = (W1**2 / torch.diag(Hinv1).unsqueeze(0) ** 2).reshape(-1)
                mask1 = ~stable_prune_mask(saliency, target).view_as(W1)
                pruned_so_far += target
            else:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            Q1, Err1 = self._prune_block(W1, Hinv1, mask1, nm)
            W[:, i1:i2] = Q1
            W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
        weight.copy_(W.to(weight.dtype))

    @staticmethod
    def _prune_block(
        W1: Tensor, Hinv1: Tensor, mask1: Tensor, nm: tuple[int, int] | None
    ) -> tuple[Tensor, Tensor]:
        """Prune one block column by column: the pruned block ``Q1`` and the scaled errors
        ``Err1`` that the columns after the block still have to absorb.

        ``mask1`` (True = prune) is filled in here, one run of m columns at a time, for N:M.
        """
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        d1 = torch.diag(Hinv1)
        for i in range(W1.shape[1]):
            w = W1[:, i]
            d = Hinv1[i, i]
            if nm is not None and i % nm[1] == 0:
                group = W1[:, i : i + nm[1]] ** 2 / d1[i : i + nm[1]].unsqueeze(0) ** 2
                mask1[:, i : i + nm[1]] = ~stable_prune_mask(group, nm[0])
            # masked_fill, not boolean indexing: indexing makes a GPU wait for the host
            # once per column.
            q = w.masked_fill(mask1[:, i], 0)
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        return Q1, Err1

    def _dampened_inverse(self, W: Tensor, percdamp: float) -> Tensor:
        """Release the Hessian and return ``_inverse_cholesky`` of it dampened by ``percdamp``
        of its mean diagonal; inputs that never fired are zeroed in ``W``."""
        H = self.H
        del self.H
        dead = torch.diag(H) == 0 if self.dead is None else self.dead
        H[dead, :] = 0
        H[:, dead] = 0
        H[dead, dead] = 1
        W[:, dead] = 0
        idx = torch.arange(H.shape[0], device=H.device)
        H[idx, idx] += percdamp * torch.mean(torch.diag(H))
        return self._inverse_cholesky(H, percdamp)

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
