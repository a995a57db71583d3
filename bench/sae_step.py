"""SAE training step: prunescope's sparse TopK step against a plain TopK SAE.

The reference is the TopK SAE as usually written: dense latent code, decoder as a matmul
over all latents, autograd, ``torch.optim.Adam`` with its defaults, decoder rows
renormalised after each step. Ours is ``prunescope.sae.optimisation_step``: hand-written
gradients that only touch the k selected latents per token, fused Adam. Both start from
the same weights and see the same batch; tokens/s is batch / median step time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.harness import interleaved_medians, median_seconds, target
from prunescope.sae import TopKSAE, make_optimizer, optimisation_step

CPU_SHAPE = {"d_model": 128, "d_sae": 1024, "k": 32, "batch": 2048}
GPU_SHAPE = {"d_model": 2304, "d_sae": 18_432, "k": 64, "batch": 4096}
TINY_SHAPE = {"d_model": 32, "d_sae": 128, "k": 8, "batch": 256}
SCALES = (1, 2, 4)
"""Multiples of the base number of latents, to show how the step grows with d_sae."""


class ReferenceTopKSAE(nn.Module):
    """A plain TopK SAE: dense code, dense decoder matmul, autograd for the backward."""

    def __init__(self, start: TopKSAE):
        super().__init__()
        self.k = start.k
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            setattr(self, name, nn.Parameter(getattr(start, name).detach().clone()))

    def loss(self, x_hat: torch.Tensor) -> torch.Tensor:
        pre = F.linear(x_hat, self.W_enc, self.b_enc)
        kept = pre.topk(self.k, dim=-1)
        code = torch.zeros_like(pre).scatter(-1, kept.indices, F.relu(kept.values))
        return (code @ self.W_dec + self.b_dec - x_hat).pow(2).sum(-1).mean()


def reference_step(sae: ReferenceTopKSAE, optimizer: torch.optim.Optimizer, x_hat) -> None:
    optimizer.zero_grad(set_to_none=True)
    sae.loss(x_hat).backward()
    optimizer.step()
    with torch.no_grad():
        sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)


def contenders(shape: dict, device: torch.device):
    """(our step, the reference step) as closures over fresh SAEs with equal weights."""
    generator = torch.Generator().manual_seed(0)
    ours = TopKSAE(shape["d_model"], shape["d_sae"], shape["k"], generator=generator).to(device)
    reference = ReferenceTopKSAE(ours)
    x_hat = torch.randn(shape["batch"], shape["d_model"], generator=generator).to(device)
    our_optimizer = make_optimizer(ours, 1e-4)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-4)
    return (
        lambda: optimisation_step(ours, our_optimizer, x_hat),
        lambda: reference_step(reference, reference_optimizer, x_hat),
    )


def compare(shape: dict, device: torch.device, repeats: int) -> dict:
    ours, reference = contenders(shape, device)
    times = interleaved_medians({"ours": ours, "reference": reference}, repeats, warmup=2)
    return {
        **shape,
        "device": str(device),
        "ours_step_s": times["ours"]["median_s"],
        "reference_step_s": times["reference"]["median_s"],
        "ours_tokens_per_s": shape["batch"] / times["ours"]["median_s"],
        "reference_tokens_per_s": shape["batch"] / times["reference"]["median_s"],
        "speedup": times["reference"]["median_s"] / times["ours"]["median_s"],
    }


def encoder_bound(shape: dict, device: torch.device, steps: int, repeats: int) -> dict:
    """Our step against the one matmul no TopK SAE can skip (the encoder's forward)."""
    ours, _ = contenders(shape, device)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(shape["batch"], shape["d_model"], generator=generator).to(device)
    weight = torch.randn(shape["d_sae"], shape["d_model"], generator=generator).to(device)
    step = median_seconds(ours, repeats, warmup=3)["median_s"]
    matmul = median_seconds(lambda: x @ weight.T, repeats, warmup=3)["median_s"]
    return {
        **shape,
        "device": str(device),
        "ours_step_s": step,
        "ours_tokens_per_s": shape["batch"] / step,
        "encoder_matmul_s": matmul,
        "fraction_of_encoder_bound": matmul / step,
        "projected_run_s": step * steps,
        "steps": steps,
    }


def run(size: str) -> dict:
    cpu = torch.device("cpu")
    base = TINY_SHAPE if size == "tiny" else CPU_SHAPE
    repeats = 3 if size == "tiny" else 15
    cases = [
        {
            "case": f"cpu x{scale} latents",
            **compare({**base, "d_sae": base["d_sae"] * scale}, cpu, repeats),
        }
        for scale in SCALES
    ]
    targets = [target("CPU step speed-up vs plain TopK SAE (x)", cases[0]["speedup"], 2.0, ">=")]
    if torch.cuda.is_available():
        gpu_shape = GPU_SHAPE if size == "full" else {**TINY_SHAPE, "batch": 1024}
        gpu = torch.device("cuda")
        cases.append({"case": "gpu paper scale", **compare(gpu_shape, gpu, repeats)})
        bound = encoder_bound(gpu_shape, gpu, steps=20_000, repeats=repeats)
        cases.append({"case": "gpu vs encoder matmul", **bound})
        targets.append(target("GPU 20,000-step SAE (s)", bound["projected_run_s"], 120.0, "<="))
    return {"cases": cases, "targets": targets, "gpu": torch.cuda.is_available()}
