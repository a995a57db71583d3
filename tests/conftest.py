"""Shared by the workflow-level tests: running Snakemake on a copy of the workflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prunescope.dry_run import planned_jobs  # noqa: F401  (re-exported to the tests)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml")
WORKFLOW_FOLDERS = ("workflow", "scripts", "configs", "envs")


def run_snakemake(*args: str, cwd: Path = ROOT, check: bool = True, env=None) -> str:
    """Snakemake's combined output; with ``check``, an AssertionError carrying its tail."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
    )
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{output[-4000:]}")
    return output


def copy_workflow(destination: Path) -> Path:
    """A runnable copy of the workflow (no results) in ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        shutil.copy(ROOT / name, destination / name)
    for name in WORKFLOW_FOLDERS:
        shutil.copytree(ROOT / name, destination / name)
    return destination


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A copy of the workflow run to completion on the smoke preset."""
    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    run_snakemake("--cores", "2", "--configfile", "configs/smoke.yaml", cwd=work)
    return work


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module of tests on tiny tensors, then as before."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def saelens_folders(tmp_path_factory) -> dict:
    """SAEs that SAELens itself builds and saves (``save_model``), one per architecture:
    ``{"standard" | "topk" | "jumprelu": (folder, the sae_lens SAE object)}``.

    Random weights, non-unit decoder rows, a non-zero b_dec (SAELens's default
    ``apply_b_dec_to_input=True`` subtracts it from the input) and positive JumpReLU
    thresholds, so a loader that skips any of these gives other encodings. d_in 12, d_sae
    48, k 4; float32 on the CPU.
    """
    import torch
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    root = tmp_path_factory.mktemp("saelens")
    generator = torch.Generator().manual_seed(20240607)
    shape = dict(d_in=12, d_sae=48)
    built = {}
    for sae_class, config in (
        (StandardSAE, StandardSAEConfig(**shape)),
        (TopKSAE, TopKSAEConfig(**shape, k=4)),
        (JumpReLUSAE, JumpReLUSAEConfig(**shape)),
    ):
        config.metadata = SAEMetadata(model_name="tiny", hook_name="blocks.1.hook_resid_post")
        sae = sae_class(config).eval()
        with torch.no_grad():
            for name, param in sae.named_parameters():
                scale = 0.3 if name.startswith("W_") else 0.5
                param.copy_(scale * torch.randn(param.shape, generator=generator))
            if hasattr(sae, "threshold"):
                sae.threshold.copy_(
                    0.1 + 0.5 * torch.rand(sae.threshold.shape, generator=generator)
                )
        architecture = config.architecture()
        folder = root / architecture
        sae.save_model(folder)
        built[architecture] = (folder, sae)
    return built
