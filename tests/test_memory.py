"""Memory estimates against the peak the library really reaches, and the check built on them.

Each measurement runs one job's library calls in its own process, forked from a server that
has imported the libraries and done nothing else (so every job starts from the same state
without paying the imports each time), with its inputs written beforehand. Measured: the
kernel's high-water mark of the resident set during the calls (``VmHWM``, reset when they
start) minus the resident set before them. The estimate's sized terms must cover it give or
take ``ALLOWANCE`` (what a first call loads, and what glibc keeps of freed blocks under 32 MB,
which ``memory.RUNTIME_BYTES`` leaves room for beside the imports), and must not overstate it
more than ``MAX_RATIO`` times where the sizes dominate.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from prunescope import memory
from prunescope.errors import UserInputError
from prunescope.memory import Budget, ModelShape
from prunescope.settings import fill_library_defaults

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
MB = 10**6
GB = 10**9
ALLOWANCE = 200 * MB
MAX_RATIO = 3.0

SERVER = r"""
import ctypes, json, os, sys, traceback
import h5py, numpy, scipy.linalg, torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
import prunescope.activations, prunescope.matching, prunescope.perplexity
import prunescope.pruning, prunescope.sae, prunescope.survival, prunescope.tinylm
import prunescope.align.data, prunescope.align.experiment, prunescope.align.hessian
import prunescope.align.mip, prunescope.align.net, prunescope.align.prune

def status(field):
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) * 1024 for line in stream if line.startswith(field))

for line in sys.stdin:
    request = json.loads(line)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        os.chdir(request["cwd"])
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            before = status("VmRSS:")
            with open("/proc/self/clear_refs", "w") as stream:
                stream.write("5")  # VmHWM restarts from what is resident now
            scope = {}
            exec(request["code"], scope)
            reply = {"growth": status("VmHWM:") - before, "result": scope.get("result")}
        except BaseException:
            reply = {"error": traceback.format_exc()}
        with os.fdopen(write, "w") as stream:
            json.dump(reply, stream)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as stream:
        reply = stream.read()
    os.waitpid(pid, 0)
    print(reply, flush=True)
"""


class Probe:
    """Runs code in a fresh fork of the server; returns its peak growth and ``result``."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, code: str):
        request = {"code": textwrap.dedent(code), "cwd": str(self.cwd)}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        reply = json.loads(self.server.stdout.readline())
        assert "error" not in reply, reply["error"]
        return reply["growth"], reply["result"]

    def peak_growth(self, code: str) -> int:
        return self.run(code)[0]

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=60)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    server = Probe(tmp_path_factory.mktemp("memory"))
    yield server
    server.close()


def check_against(estimate: memory.Estimate, measured: int, sized: bool = True) -> None:
    """The estimate covers the measured peak; where its sizes dominate, not many times over."""
    sized_mb, measured_mb = estimate.sized_bytes / MB, measured / MB
    print(f"{estimate.job}: estimate {sized_mb:.0f} MB, measured {measured_mb:.0f} MB")
    assert measured <= estimate.sized_bytes + ALLOWANCE
    if sized:
        assert estimate.sized_bytes <= MAX_RATIO * measured


# --------------------------------------------------------------------------- Study LM


def write_llama(probe: Probe, folder: str, **architecture) -> ModelShape:
    """A random Llama saved to ``folder`` (as a hub model's), and its shape from its config."""
    _, config = probe.run(
        f"""
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.manual_seed(0)
        config = LlamaConfig(attn_implementation="eager", tie_word_embeddings=True,
                             **{architecture!r})
        model = LlamaForCausalLM(config)
        model.save_pretrained({folder!r})
        result = {{**config.to_dict(), "parameters": sum(p.numel() for p in model.parameters())}}
        """
    )
    shape = ModelShape.from_hf_config(config, "m")
    assert shape.parameters == config["parameters"]
    return shape


def lm_config(**blocks) -> dict:
    return {"models": {"m": {"source": "hf", "dtype": "float32"}}, **blocks}


def test_perplexity_holds_a_batch_of_logits_over_the_whole_vocabulary(probe):
    shape = write_llama(
        probe,
        "wide_vocab",
        vocab_size=32000,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    ppl = {"window": 128, "stride": 127, "max_tokens": 2032, "batch_size": 16}
    estimate = memory.evaluate_perplexity_memory(lm_config(perplexity=ppl), "m", shape)
    measured = probe.peak_growth(
        """
        import torch
        from transformers import AutoModelForCausalLM
        from prunescope.perplexity import perplexity
        model = AutoModelForCausalLM.from_pretrained("wide_vocab")
        ids = torch.randint(3, 32000, (2032,), generator=torch.Generator().manual_seed(0))
        perplexity(model, ids, window=128, stride=127, bos_id=1, batch_size=16)
        """
    )
    check_against(estimate, measured)


def test_sparsegpt_holds_the_calibration_states_and_a_block_s_hessians(probe):
    shape = write_llama(
        probe,
        "mlp_heavy",
        vocab_size=1000,
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=1,
        num_attention_heads=6,
    )
    calibration = {"n_tokens": 4096, "context": 128, "batch_size": 8}
    config = lm_config(pruning={"grid": {"sparsegpt": [0.5]}, "calibration": calibration})
    estimate = memory.prune_model_memory(config, "m", "sparsegpt", shape)
    measured = probe.peak_growth(
        """
        import torch
        from transformers import AutoModelForCausalLM
        from prunescope.pruning import prune_model
        model = AutoModelForCausalLM.from_pretrained("mlp_heavy")
        ids = torch.randint(3, 1000, (32, 128), generator=torch.Generator().manual_seed(0))
        prune_model(model, "sparsegpt", 0.5, ids, batch_size=8)
        model.save_pretrained("pruned")
        """
    )
    check_against(estimate, measured)


def test_capture_holds_one_block_s_forward_and_the_batch_in_two_precisions(probe):
    shape = write_llama(
        probe,
        "capture_lm",
        vocab_size=2000,
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=2,
        num_attention_heads=8,
    )
    acts = {"context": 128, "train_tokens": 4096, "eval_tokens": 2048, "batch_size": 32}
    estimate = memory.capture_activations_memory(lm_config(activations=acts), "m", shape)
    measured = probe.peak_growth(
        """
        import torch
        from transformers import AutoModelForCausalLM
        from prunescope.activations import capture_activations
        model = AutoModelForCausalLM.from_pretrained("capture_lm")
        g = torch.Generator().manual_seed(0)
        splits = {"train": torch.randint(3, 2000, (32, 128), generator=g),
                  "eval": torch.randint(3, 2000, (16, 128), generator=g)}
        capture_activations(model, 1, splits, "cache.h5", provenance={}, batch_size=32,
                            skip_positions=1)
        """
    )
    check_against(estimate, measured)


def test_training_the_local_model_holds_adam_state_activations_and_logits(probe):
    architecture = {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "tie_word_embeddings": True,
    }
    training = {"batch_size": 16, "context": 128, "train_tokens": 8192, "eval_tokens": 2048}
    spec = {
        "source": "local",
        "dtype": "float32",
        "tokenizer": {"vocab_size": 8000},
        "architecture": architecture,
        "training": training,
    }
    estimate = memory.train_local_model_memory({"models": {"m": spec}}, "m")
    measured = probe.peak_growth(
        f"""
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
        from prunescope.tinylm import TrainingConfig, train_lm
        config = LlamaConfig(vocab_size=8000, attn_implementation="eager", **{architecture!r})
        model = LlamaForCausalLM(config)
        g = torch.Generator().manual_seed(0)
        train = torch.randint(0, 8000, (64, 128), generator=g)
        held_out = torch.randint(0, 8000, (16, 128), generator=g)
        train_lm(model, train, held_out, TrainingConfig(steps=2, batch_size=16, warmup_steps=1),
                 "cpu")
        model.save_pretrained("trained")
        """
    )
    check_against(estimate, measured)


SAE_CASES = {
    # a wide dictionary, no resampling: weights, Adam state, a step's pre-activations
    "weights": dict(d_model=256, expansion=64, k=32, batch_size=1024, steps=6, resample_every=0),
    # one resampling with nearly every latent dead: their pre-activations, 4,096 rows at a time
    "resampling": dict(d_model=64, expansion=128, k=4, batch_size=256, steps=2, resample_every=1),
}


@pytest.mark.parametrize("case", SAE_CASES)
def test_sae_training(probe, case):
    settings = dict(SAE_CASES[case])
    d_model = settings.pop("d_model")
    probe.run(
        f"""
        import h5py, numpy as np
        from prunescope.activations import FORMAT_VERSION
        rng = np.random.default_rng(0)
        with h5py.File("{case}.h5", "w") as cache:
            for name, rows in (("train", 20_000), ("eval", 1024)):
                data = rng.normal(size=(rows, {d_model})).astype(np.float32)
                cache.create_dataset(name, data=data, chunks=(min(2048, rows), {d_model}))
            cache.attrs.update(mean=np.zeros({d_model}), std=np.ones({d_model}),
                               format_version=FORMAT_VERSION, d_model={d_model})
        """
    )
    config = {"sae": settings, "activations": {"train_tokens": 20_000, "eval_tokens": 1024}}
    estimate = memory.train_sae_memory(config, "m", d_model)
    measured = probe.peak_growth(
        f"""
        from prunescope.sae import SAEConfig, train_sae
        train_sae("{case}.h5", SAEConfig(**{settings!r}, warmup_steps=1, lr=1e-3), "cpu",
                  "sae_{case}")
        """
    )
    check_against(estimate, measured)


def test_matching_holds_both_decoders_and_a_block_of_cosines(probe):
    d_model, expansion = 128, 64
    probe.run(
        f"""
        import torch
        from prunescope.sae import SAEConfig, TopKSAE, save_sae
        for seed in (0, 1):
            sae = TopKSAE({d_model}, {expansion * d_model}, 8,
                          generator=torch.Generator().manual_seed(seed))
            save_sae(sae, SAEConfig(expansion={expansion}, k=8), f"sae{{seed}}")
        """
    )
    config = {"sae": {"expansion": expansion}, "analysis": {"match_block_rows": None}}
    estimate = memory.match_dictionaries_memory(config, "m", d_model)
    measured = probe.peak_growth(
        """
        from prunescope.matching import match_dictionaries
        from prunescope.sae import load_sae
        dec_a = load_sae("sae0").W_dec.detach()
        dec_b = load_sae("sae1").W_dec.detach()
        match_dictionaries(dec_a, dec_b, device="cpu")
        """
    )
    check_against(estimate, measured)


@pytest.fixture(scope="module")
def survival_files(probe) -> Probe:
    """Token-aligned dense and pruned eval caches of 4,500 rows x 128 and two SAEs of 8,192
    latents: two full chunks of 2,048 rows (``survival.default_batch_rows``) and a short
    one, so the jobs reach their steady state."""
    probe.run(
        f"""
        import h5py, numpy as np, torch
        from prunescope.sae import SAEConfig, TopKSAE, save_sae
        rng = np.random.default_rng(0)
        dense = rng.normal(size=({SURVIVAL_ROWS}, {SURVIVAL_D_MODEL})).astype(np.float32)
        pruned = dense + 0.3 * rng.normal(size=dense.shape).astype(np.float32)
        for name, rows in (("dense", dense), ("pruned", pruned)):
            with h5py.File(f"{{name}}_acts.h5", "w") as cache:
                cache.create_dataset("eval", data=rows, chunks=(2048, {SURVIVAL_D_MODEL}))
        for cond, seed in (("dense", 0), ("pruned", 1)):
            sae = TopKSAE({SURVIVAL_D_MODEL}, {SURVIVAL_EXPANSION * SURVIVAL_D_MODEL}, 32,
                          generator=torch.Generator().manual_seed(seed))
            save_sae(sae, SAEConfig(expansion={SURVIVAL_EXPANSION}, k=32), f"{{cond}}_sae")
        """
    )
    return probe


SURVIVAL_ROWS, SURVIVAL_D_MODEL, SURVIVAL_EXPANSION = 4500, 128, 64
SURVIVAL_CONFIG = {
    "sae": {"expansion": SURVIVAL_EXPANSION},
    "activations": {"eval_tokens": SURVIVAL_ROWS},
}


def test_activation_survival_holds_three_latent_chunks_and_two_float64_copies(survival_files):
    estimate = memory.activation_survival_memory(SURVIVAL_CONFIG, "m", SURVIVAL_D_MODEL)
    measured = survival_files.peak_growth(
        """
        import h5py, torch
        from prunescope.sae import load_sae
        from prunescope.survival import activation_survival
        torch.set_num_threads(1)  # as the rule runs it (threads: 1)
        sae = load_sae("dense_sae")
        with h5py.File("dense_acts.h5") as dense, h5py.File("pruned_acts.h5") as pruned:
            activation_survival(dense["eval"], pruned["eval"], sae, control_seed=0)
        """
    )
    check_against(estimate, measured)


def test_reverse_survival_holds_the_cross_moments_and_a_product_block(survival_files):
    estimate = memory.reverse_survival_memory(SURVIVAL_CONFIG, "m", SURVIVAL_D_MODEL)
    # at 8,192 x 8,192 the accumulator is a third of the peak (the product block half)
    (cross,) = [term for term in estimate.terms if "cross moments" in term.what]
    assert cross.bytes == 8 * 8192**2 > estimate.sized_bytes / 4
    measured = survival_files.peak_growth(
        """
        import h5py, torch
        from prunescope.sae import load_sae
        from prunescope.survival import best_dense_partners
        torch.set_num_threads(1)
        dense_sae = load_sae("dense_sae")
        sae = load_sae("pruned_sae")
        with h5py.File("dense_acts.h5") as dense, h5py.File("pruned_acts.h5") as pruned:
            best_dense_partners(pruned["eval"], dense["eval"], sae, dense_sae, [0.5, 0.7])
        """
    )
    check_against(estimate, measured)


# --------------------------------------------------------------------------- Study ALIGN


def align_config(**settings) -> dict:
    align = {
        "tasks": {"dnf": {"kind": "dnf", "literals": 48}},
        "dnf": {"train_per_16_literals": 1000, "test_per_16_literals": 500},
        "hessian": {"dnf_fraction": 0.25, "digits_fraction": 1.0, "damping": 0.01},
        "sparsities": [0.5, 0.875],
        "methods": ["mp", "obd", "obs", "obs_mask"],
        "structures": ["unstructured"],
        "finetuning": {"epochs": 1, "lr": 1e-4, "batch_size": 256},
        "mip": {"threads": 1, "enumerate_limit": 20000},
    }
    return {"align": {**align, **settings}}


@pytest.fixture(scope="module")
def align_files(probe) -> Probe:
    """A DNF-48 dataset (3000 train, 1500 test samples) and a dense net."""
    probe.run(
        """
        from prunescope.align.data import sample_dnf_dataset, save_dataset
        from prunescope.align.net import AlignNets, save_nets
        save_dataset("dnf.npz", sample_dnf_dataset(48, 3000, 1500, seed=0))
        save_nets("dense.safetensors", AlignNets.initialise(1, 48, 2, seed=0))
        """
    )
    return probe


def test_align_hessian_and_its_inverse(align_files):
    estimate = memory.estimate_align_hessian_memory(align_config(), "dnf")
    measured = align_files.peak_growth(
        """
        import numpy as np
        from prunescope.align.data import load_dataset
        from prunescope.align.hessian import hessian_sample, w1_hessian
        from prunescope.align.net import load_nets
        from prunescope.align.prune import damped_inverse
        data = load_dataset("dnf.npz")
        net = load_nets("dense.safetensors").variant(0)
        rows = hessian_sample(len(data.x_train), 0.25, 0)
        hessian = w1_hessian(**net, x=data.x_train[rows])
        inverse = damped_inverse(hessian, 0.01)
        np.save("hessian.npy", hessian)
        np.save("hessian_inverse.npy", inverse)
        """
    )
    check_against(estimate, measured)


def test_align_pruning_holds_both_hessians_and_the_obs_compensation(align_files):
    align_files.run(
        """
        import numpy as np
        rng = np.random.default_rng(0)
        factor = rng.normal(size=(2304, 1152))
        hessian = factor @ factor.T / 2304 + np.eye(2304)
        np.save("h.npy", hessian)
        np.save("h_inv.npy", np.linalg.inv(hessian))
        """
    )
    estimate = memory.prune_align_nets_memory(align_config(), "dnf", "unstructured")
    measured = align_files.peak_growth(
        """
        from prunescope.align.experiment import prune_variants
        from prunescope.align.net import load_nets
        from prunescope.artifacts import read_npy
        prune_variants(
            load_nets("dense.safetensors").variant(0),
            [(m, s) for s in (0.5, 0.875) for m in ("mp", "obd", "obs", "obs_mask")],
            structure="unstructured",
            hessian=read_npy("h.npy", "H"),
            hessian_inverse=read_npy("h_inv.npy", "H_inv"),
            mip_solutions={},
        )
        """
    )
    check_against(estimate, measured)


def test_mip_search_stays_within_its_estimate(probe):
    config = align_config(tasks={"dnf": {"kind": "dnf", "literals": 64}})
    estimate = memory.solve_align_mip_memory(config, "dnf", "unstructured")
    measured = probe.peak_growth(
        """
        import numpy as np
        from prunescope.align.mip import MipSettings, solve_layer
        rng = np.random.default_rng(0)
        solve_layer(rng.normal(size=(4, 64)), rng.normal(size=(64, 64)), 8,
                    settings=MipSettings(node_limit=64, threads=1), progress=False)
        """
    )
    # a small job at every width the schema allows: only the bound is checked
    check_against(estimate, measured, sized=False)


def test_finetuning_holds_every_variant_s_activations(align_files):
    config = align_config(
        sparsities=[0.25, 0.5, 0.625, 0.75, 0.8125, 0.875, 0.9375],
        methods=["mp", "obd", "obs", "mip", "flo", "obs_mask", "mip_mask"],
    )
    variants = 7 * 7
    align_files.run(
        f"""
        import numpy as np
        from prunescope.align.experiment import save_variant_nets
        from prunescope.align.net import AlignNets
        save_variant_nets("pruned.safetensors", AlignNets.initialise({variants}, 48, 2, seed=0),
                          np.ones(({variants}, 48, 48), bool))
        """
    )
    estimate = memory.finetune_align_nets_memory(config, "dnf", "unstructured")
    measured = align_files.peak_growth(
        """
        from prunescope.align.data import load_dataset
        from prunescope.align.experiment import (
            code_maps, finetune_variants, load_variant_nets, net_metrics,
        )
        from prunescope.align.net import load_nets
        data = load_dataset("dnf.npz")
        dense = load_nets("dense.safetensors").variant(0)
        nets, masks = load_variant_nets("pruned.safetensors")
        before = code_maps(nets, data.clauses)
        nets = finetune_variants(nets, masks, data, epochs=1, lr=1e-4, batch_size=256, seed=0)
        net_metrics(nets, data, dense)
        code_maps(nets, data.clauses)
        """
    )
    check_against(estimate, measured)


# --------------------------------------------------------------------------- assumptions


def test_sizes_the_library_fixes_are_the_ones_estimated(probe):
    _, found = probe.run(
        """
        from inspect import signature
        from sklearn.datasets import load_digits
        from prunescope import activations, matching, sae, survival
        from prunescope.align import hessian, mip, net, plan
        result = {
            "SAE_BUFFER_ROWS": sae.SAEConfig().buffer_rows,
            "SAE_EVAL_ROWS": sae.SAEConfig().eval_batch_size,
            "SAE_RESAMPLE_CHUNK": sae.RESAMPLE_CHUNK,
            "RESAMPLE_UNTIL": sae.RESAMPLE_UNTIL,
            "CACHE_CHUNK_ROWS": activations.DEFAULT_CHUNK_ROWS,
            "MATCH_BLOCK_BYTES": matching.BLOCK_BYTES,
            "SURVIVAL_CHUNK_ELEMENTS": survival.CHUNK_ELEMENTS,
            "SURVIVAL_CROSS_BYTES": survival.CROSS_BYTES,
            "SURVIVAL_PRODUCT_BYTES": survival.PRODUCT_BYTES,
            "SURVIVAL_CORRELATION_BYTES": survival.CORRELATION_BYTES,
            "HESSIAN_CHUNK": signature(hessian.w1_hessian).parameters["chunk"].default,
            "ENUMERATION_BATCH": mip._ENUMERATION_BATCH,
            "ALIGN_EVAL_ROWS": signature(net.evaluate_nets).parameters["batch_size"].default,
            "DIGITS_SAMPLES": len(load_digits().target),
            "DIGITS_PIXELS": plan.DIGITS_PIXELS,
        }
        """
    )
    from prunescope.memory import sizes

    assert found == {name: getattr(sizes, name) for name in found}


def test_a_local_model_s_weights_are_counted_as_it_is_built(probe):
    config = preset("config.yaml")
    spec = config["models"]["tiny"]
    _, built = probe.run(
        f"""
        from prunescope.tinylm import build_llama

        class Tokenizer:  # what build_llama reads of one
            bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

            def __len__(self):
                return {spec["tokenizer"]["vocab_size"]}

        model = build_llama(Tokenizer(), {spec["architecture"]!r})
        result = sum(p.numel() for p in model.parameters())
        """
    )
    assert ModelShape.from_local(config, "tiny").parameters == built


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gemma3"])
def test_a_hub_model_s_weights_are_counted_from_its_config(probe, arch):
    _, (config, built) = probe.run(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from tiny_lms import tiny_causal_lm
        model = tiny_causal_lm({arch!r}, vocab_size=300)
        result = [model.config.to_dict(), sum(p.numel() for p in model.parameters())]
        """
    )
    assert ModelShape.from_hf_config(config).parameters == built


# The paper's models as their config.json files give them, with their published sizes.
HUB_CONFIGS = {
    "gemma3_1b": (
        {
            "model_type": "gemma3_text",
            "hidden_size": 1152,
            "intermediate_size": 6912,
            "num_hidden_layers": 26,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "vocab_size": 262144,
            "final_logit_softcapping": None,
        },
        999_885_952,
    ),
    "gemma2_2b": (
        {
            "model_type": "gemma2",
            "hidden_size": 2304,
            "intermediate_size": 9216,
            "num_hidden_layers": 26,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "vocab_size": 256000,
            "final_logit_softcapping": 30.0,
        },
        2_614_341_888,
    ),
    "llama32_1b": (
        {
            "model_type": "llama",
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "vocab_size": 128256,
            "tie_word_embeddings": True,
        },
        1_235_814_400,
    ),
}


@pytest.mark.parametrize("model", HUB_CONFIGS)
def test_the_paper_models_have_their_published_sizes(model):
    config, published = HUB_CONFIGS[model]
    assert ModelShape.from_hf_config(config, model).parameters == pytest.approx(published, rel=1e-3)


def test_a_hub_model_folder_gives_its_shape_once_it_has_a_config(tmp_path):
    folder = tmp_path / "gemma-2-2b"
    folder.mkdir()
    config = preset("config.yaml")
    config["models"]["gemma2_2b"] = {
        "source": "hf",
        "name": str(folder),
        "corpus": "stdlib",
        "layers": [3],
        "dtype": "float32",
    }
    assert memory.hub_shape(config, "gemma2_2b") is None and memory.hub_shapes(config) == {}
    hf_config, _ = HUB_CONFIGS["gemma2_2b"]
    (folder / "config.json").write_text(json.dumps(hf_config))
    expected = ModelShape.from_hf_config(hf_config, "gemma2_2b")
    assert memory.hub_shape(config, "gemma2_2b") == expected
    assert memory.hub_shapes(config) == {"gemma2_2b": expected}
    assert memory.hub_shape(config, "tiny") is None  # trained here: from_local sizes it


@pytest.mark.parametrize(
    ("d", "keep", "block"), [(16, 12, None), (64, 4, None), (16, 8, (2, 4)), (32, 10, (2, 4))]
)
def test_mask_supports_are_counted_as_the_mip_counts_them(d, keep, block):
    from prunescope.align.mip import count_supports
    from prunescope.memory.align_jobs import _count_supports

    assert _count_supports(d, keep, block) == count_supports(d, keep, block)


# --------------------------------------------------------------------------- the check


def preset(name: str) -> dict:
    config = yaml.safe_load((ROOT / name).read_text())
    validate(
        fill_library_defaults(config), SCHEMA
    )  # fills in the schema's defaults, as Snakemake does
    return config


def _set(config: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


@pytest.mark.parametrize(
    "name", ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml", "configs/feature.yaml"]
)
def test_the_presets_fit_a_laptop(name):
    memory.check_memory(preset(name), 8 * GB)


def test_the_paper_models_fit_one_80_gb_gpu_machine():
    shapes = {m: ModelShape.from_hf_config(c, m) for m, (c, _) in HUB_CONFIGS.items()}
    config = preset("configs/paper.yaml")
    memory.check_memory(config, 80 * GB, shapes)
    largest = max(memory.config_estimates(config, shapes), key=lambda e: e.bytes)
    print(f"largest paper job: {largest.job}, {largest.bytes / GB:.1f} GB")
    # a hub model's jobs are only checked once its shape is known
    assert not [e for e in memory.config_estimates(config) if e.rule in memory.LM_JOBS]


ABSURD = {
    "sae.expansion": (
        {"sae.expansion": 100_000},
        r"train_sae for model tiny would need about [\d,.]+ GB \(largest part: evaluation "
        r"pre-activations of 8,192 rows x d_sae = sae.expansion 100,000 x d_model 128, "
        r"[\d,.]+ GB\) but this machine has 16\.0 GB; lower sae\.expansion",
    ),
    "align literals": (
        {"align.tasks.dnf256": {"kind": "dnf", "literals": 256}},
        r"estimate_align_hessian for task dnf256 would need about 20[\d,.]+ GB \(largest part: "
        r"the Hessian \(h\*d\)\^2 = 65,536\^2 float64, its damped inverse and their "
        r"temporaries, [\d,.]+ GB\) but this machine has 16\.0 GB; "
        r"lower align\.tasks\.dnf256\.literals",
    ),
    "sae.batch_size": (
        {"sae.batch_size": 5_000_000},
        r"train_sae for model tiny would need about [\d,.]+ GB \(largest part: encoder "
        r"pre-activations of sae\.batch_size 5,000,000 .*\) but this machine has 16\.0 GB; "
        r"lower sae\.batch_size or sae\.expansion",
    ),
    "perplexity batch x vocab": (
        {"models.tiny.tokenizer.vocab_size": 65536, "perplexity.batch_size": 1000},
        r"evaluate_perplexity for model tiny would need about [\d,.]+ GB \(largest part: logits "
        r"of batch 788 x window 128 x vocab 65,536, [\d,.]+ GB\) but this machine has 16\.0 GB; "
        r"lower perplexity\.batch_size or perplexity\.window or "
        r"models\.tiny\.tokenizer\.vocab_size",
    ),
}


@pytest.mark.parametrize("case", ABSURD)
def test_absurd_sizes_are_refused_with_the_estimate_and_the_key(case):
    changes, message = ABSURD[case]
    config = preset("config.yaml")
    for key, value in changes.items():
        _set(config, key, value)
    with pytest.raises(UserInputError) as refused:
        memory.check_memory(config, 16 * GB)
    print(refused.value)
    assert re.fullmatch(message, str(refused.value))


def test_a_rule_given_mem_mb_by_the_profile_is_held_to_it():
    config = preset("configs/paper.yaml")
    budgets = memory.job_budgets({"estimate_align_hessian": 1000}, machine_bytes=64 * GB)
    assert budgets["train_sae"] == Budget(64 * GB, "this machine has")
    with pytest.raises(UserInputError) as refused:
        memory.check_memory(config, budgets)
    assert str(refused.value) == (
        "estimate_align_hessian for task dnf64 would need about 1.5 GB (largest part: the "
        "Hessian (h*d)^2 = 4,096^2 float64, its damped inverse and their temporaries, 0.8 GB) "
        "but its set-resources mem_mb 1,000 gives 1.0 GB; lower align.tasks.dnf64.literals"
    )
    # below what the libraries alone take, no key of the config can help
    with pytest.raises(UserInputError) as refused:
        memory.check_memory(config, memory.job_budgets({"estimate_align_hessian": 500}, 64 * GB))
    assert str(refused.value) == (
        "estimate_align_hessian for task dnf16 would need about 0.7 GB (largest part: Python, "
        "torch and the libraries every job loads, 0.7 GB) but its set-resources mem_mb 500 "
        "gives 0.5 GB"
    )
    memory.check_memory(config, memory.job_budgets({"estimate_align_hessian": 2000}, 64 * GB))


def test_set_resources_are_read_as_snakemake_parses_them():
    from snakemake.cli import parse_set_resources

    parsed = parse_set_resources(
        [
            "train_sae:mem_mb=64000",
            "train_sae:runtime=720",
            "prune_model:mem='16G'",
            "match_dictionaries:mem_mb=2*input.size_mb",
        ]
    )
    assert memory.set_resources_mem_mb(parsed) == {"train_sae": 64000, "prune_model": 16000}


def test_a_running_job_holds_the_estimates_against_the_device_it_got(probe):
    gemma, _ = HUB_CONFIGS["gemma2_2b"]
    tiny = {**gemma, "hidden_size": 64, "intermediate_size": 128, "vocab_size": 1000}
    paper = preset("configs/paper.yaml")
    huge_batch = copy.deepcopy(paper)
    huge_batch["perplexity"]["batch_size"] = 4096
    _, (machine, refused) = probe.run(
        f"""
        from prunescope import memory
        from prunescope.errors import UserInputError
        memory.check_hub_model({paper!r}, "gemma2_2b", {tiny!r}, "cpu")
        try:
            memory.check_hub_model({huge_batch!r}, "gemma2_2b", {gemma!r}, "cpu")
        except UserInputError as err:
            result = [memory.machine_memory(), str(err)]
        """
    )
    assert re.fullmatch(
        r"evaluate_perplexity for model gemma2_2b would need about 2,4[\d,.]+ GB \(largest "
        r"part: logits of batch 4096 x window 256 x vocab 256,000, [\d,.]+ GB\) but this "
        rf"machine has {machine / GB:,.1f} GB; lower perplexity\.batch_size or "
        r"perplexity\.window or models\.gemma2_2b\.name",
        refused,
    )


def test_one_job_s_estimate_is_the_one_the_check_uses():
    config = preset("config.yaml")
    checked = {(e.rule, e.subject): e for e in memory.config_estimates(config)}
    jobs = {
        ("train_sae", "model tiny"): {"model": "tiny", "cond": "dense", "layer": "2", "seed": "0"},
        ("prune_model", "model tiny (wanda)"): {"model": "tiny", "method": "wanda"},
        ("activation_survival", "model tiny"): {"model": "tiny", "cond": "wanda-0.5", "layer": "2"},
        ("reverse_survival", "model tiny"): {
            "model": "tiny",
            "cond": "dense",
            "layer": "2",
            "seed": "1",
        },
        ("estimate_align_hessian", "task digits"): {"task": "digits", "trial": "0"},
        ("finetune_align_nets", "task dnf32 (2of4)"): {"task": "dnf32", "structure": "2of4"},
    }
    for (rule, subject), wildcards in jobs.items():
        assert memory.job_estimate(config, rule, wildcards) == checked[rule, subject]
    hub = preset("configs/paper.yaml")
    wildcards = {"model": "gemma2_2b", "cond": "dense", "layer": "12", "seed": "0"}
    assert memory.job_estimate(hub, "train_sae", wildcards) is None
    shape = ModelShape.from_hf_config(HUB_CONFIGS["gemma2_2b"][0], "gemma2_2b")
    assert memory.job_estimate(hub, "train_sae", wildcards, shape) == memory.train_sae_memory(
        hub, "gemma2_2b", 2304
    )


@pytest.mark.workflow
def test_the_workflow_refuses_a_config_that_cannot_fit_before_any_job(tmp_path):
    from conftest import run_snakemake

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["sae"]["expansion"] = 100_000
    bad = tmp_path / "huge.yaml"
    bad.write_text(yaml.safe_dump(config))
    out = run_snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    assert re.search(
        r"train_sae for model tiny would need about [\d,.]+ GB .* lower sae\.expansion", out
    ), out[-2000:]
    assert not (tmp_path / "results").exists()


def test_tokenised_text_takes_what_is_estimated_per_token(probe):
    n_tokens = 1_000_000
    measured = probe.peak_growth(
        f"""
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        from prunescope.corpus import Document, token_stream
        vocab = {{f"w{{i}}": i for i in range(4096)}} | {{"[UNK]": 4096}}
        core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
        words = " ".join(f"w{{(7 * i) % 4096}}" for i in range(1000))
        docs = (Document(str(d), words) for d in range({n_tokens // 1000}))
        ids = token_stream(tokenizer, docs, max_tokens={n_tokens}, separator=" ")
        """
    )
    from prunescope.memory.lm_jobs import _tokens_term

    estimate = memory.Estimate("tokens", "text", (_tokens_term(n_tokens, "n_tokens"),))
    check_against(estimate, measured)


def test_a_hub_model_s_job_is_sized_once_its_config_json_is_here(tmp_path):
    folder = tmp_path / "gemma-2-2b"
    folder.mkdir()
    config = preset("config.yaml")
    config["models"]["gemma2_2b"] = {
        "source": "hf",
        "name": str(folder),
        "corpus": "stdlib",
        "layers": [3],
        "dtype": "float32",
        "grid": {"wanda": [0.5]},
    }
    wildcards = {"model": "gemma2_2b", "method": "wanda", "sparsity": "0.5"}
    not_built = [str(tmp_path / "results/models/gemma2_2b/dense")]
    known: dict = {}
    # not sized yet, inputs missing: Snakemake is told to ask again when the job is ready
    with pytest.raises(FileNotFoundError, match="not built yet"):
        memory.job_mem_mb(config, "prune_model", wildcards, not_built, known)
    assert memory.job_mem_mb(config, "prune_model", wildcards, [str(folder)], known) is None
    hf_config, _ = HUB_CONFIGS["gemma2_2b"]
    (folder / "config.json").write_text(json.dumps(hf_config))
    mem_mb = memory.job_mem_mb(config, "prune_model", wildcards, not_built, known)
    shape = ModelShape.from_hf_config(hf_config, "gemma2_2b")
    assert known == {"gemma2_2b": shape}
    assert mem_mb == memory.prune_model_memory(config, "gemma2_2b", "wanda", shape).mem_mb
    (folder / "config.json").unlink()  # kept once found: no second read
    assert memory.job_mem_mb(config, "prune_model", wildcards, not_built, known) == mem_mb
    local = {"model": "tiny", "method": "wanda", "sparsity": "0.4"}
    assert memory.job_mem_mb(config, "prune_model", local, [], {}) == (
        memory.job_estimate(config, "prune_model", local).mem_mb
    )
