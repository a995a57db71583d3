"""RQ3, transfer: how well a dictionary fitted to the dense model's activations reconstructs
another condition's, for any SAE that encodes and reconstructs raw activations (trained
here, or Gemma Scope, SAELens, sparsify ... read by ``prunescope.pretrained``), and
Table 2 built from the per-condition results."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from prunescope.activations import require_finite_rows
from prunescope.analysis import condition_columns

TABLE2_COLUMNS = [
    "model",
    "layer",
    "sae",
    "sae_kind",
    "sae_format",
    "condition",
    "method",
    "sparsity",
    "fvu",
    "fvu_over_dense",
    "l0",
    "alive",
    "d_sae",
    "n_eval_tokens",
]


@torch.no_grad()
def reconstruction_metrics(sae, rows, batch_size: int, source: str = "activations") -> dict:
    """FVU, L0 and alive latents of ``sae`` (``encode_and_reconstruct``, ``d_sae``) on ``rows``.

    FVU = sum ||x - x_rec||^2 / sum ||x - mean(x)||^2, the mean being that of ``rows``
    themselves: a dictionary applied to other activations is judged against their own
    variance, as in ``sae.evaluate_sae``. L0 is the mean number of non-zero latents per row;
    a latent is alive when it is non-zero on at least one row. Sums are float64, over rows
    shifted by the first batch's mean so that large offsets do not cancel.
    """
    n_rows = rows.shape[0]
    if n_rows == 0:
        raise ValueError(f"{source} has no rows to evaluate on")
    # two tensors: both are added to in place
    error = torch.zeros((), dtype=torch.float64)
    active = torch.zeros((), dtype=torch.float64)
    shift = shifted_sum = shifted_sumsq = None
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    for start in range(0, n_rows, batch_size):
        x = torch.as_tensor(np.asarray(rows[start : start + batch_size]), dtype=torch.float32)
        require_finite_rows(x, start, source)
        z, x_rec = sae.encode_and_reconstruct(x)
        x64 = x.double()
        error += (x64 - x_rec.double().cpu()).pow(2).sum()
        if shift is None:
            shift = x64.mean(0)
            shifted_sum, shifted_sumsq = torch.zeros_like(shift), torch.zeros_like(shift)
        shifted = x64 - shift
        shifted_sum += shifted.sum(0)
        shifted_sumsq += shifted.pow(2).sum(0)
        on = (z != 0).cpu()
        active += on.sum()
        fired |= on.any(0)
    variance = (shifted_sumsq - shifted_sum.pow(2) / n_rows).clamp_min(0).sum()
    return {
        "fvu": float(error / variance),
        "l0": float(active / n_rows),
        "alive": int(fired.sum()),
        "d_sae": int(sae.d_sae),
        "n_eval_tokens": int(n_rows),
    }


def transfer_table(records: Iterable[dict]) -> pd.DataFrame:
    """Table 2: one row per SAE and condition, with each SAE's FVU as a multiple of its
    FVU on the dense model's activations (``fvu_over_dense``, NaN without a dense row)."""
    rows = [{**r, **condition_columns(r["condition"])} for r in records]
    table = pd.DataFrame(rows)
    dense = table[table["condition"] == "dense"].set_index(["model", "layer", "sae"])["fvu"]
    keys = pd.MultiIndex.from_frame(table[["model", "layer", "sae"]])
    table["fvu_over_dense"] = table["fvu"].to_numpy() / dense.reindex(keys).to_numpy()
    # the SAE trained here first, as the paper's reference, then those trained elsewhere
    table["kind_order"] = table["sae_kind"].map({"trained": 0}).fillna(1)
    order = ["model", "layer", "kind_order", "sae", "method", "sparsity"]
    return table.sort_values(order, ignore_index=True)[TABLE2_COLUMNS]


__all__ = ["TABLE2_COLUMNS", "reconstruction_metrics", "transfer_table"]
