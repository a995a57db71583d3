"""Feature-aware pruning: norms, bases, the feature Hessian, the feature methods, the
distortion measures and tables, each against a brute-force reference on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats
from tiny_lms import tiny_causal_lm

from prunescope.architectures import SITES, feature_sites_of, site_norm, weight_matrix
from prunescope.artifacts import CorruptFileError
from prunescope.errors import UserInputError
from prunescope.feature_pruning.basis import (
    BasisFile,
    FeatureBasis,
    load_basis,
    measure_feature_basis,
    save_basis,
)
from prunescope.feature_pruning.distortion import (
    feature_distortion,
    quadratic_distortion,
    weight_distortion,
)
from prunescope.feature_pruning.hessian import feature_hessian, hybrid_hessian
from prunescope.feature_pruning.norms import (
    check_norm_map,
    input_second_moment,
    seen_directions,
    token_scales,
)
from prunescope.feature_pruning.tables import (
    condition_distortions,
    distortion_ranks,
    feature_pruning_table,
    rank_correlation,
)
from prunescope.models import decoder_layers, prunable_linears, residual_hook
from prunescope.pruning import matrix_mask, nm_mask, prune_model
from prunescope.sae import TopKSAE

VOCAB = 64


def randomised_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every norm a gain (and bias) far from its initial ones, so that a test sees
    whether the gain is really applied."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if "norm" in type(module).__name__.lower() or name.split(".")[-1].startswith("ln"):
                for param in module.parameters(recurse=False):
                    param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    return model


# --- the norm map --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gemma3", "gpt2", "gpt_neox", "phi3", "opt"])
def test_norm_output_is_seen_directions_over_token_scale(arch):
    model = randomised_norms(tiny_causal_lm(arch, VOCAB, num_hidden_layers=2))
    rows = torch.randn(50, 32, generator=torch.Generator().manual_seed(1)) * 3 + 0.5
    for site in SITES:
        norm = site_norm(model, 1, site)
        expected = norm(rows).double()
        bias = getattr(norm, "bias", None)
        predicted = seen_directions(norm, rows) / token_scales(norm, rows).unsqueeze(-1)
        if bias is not None:
            predicted = predicted + bias.double()
        torch.testing.assert_close(predicted, expected, rtol=1e-5, atol=1e-5)
        check_norm_map(norm, rows, f"{arch} {site}")


def test_a_norm_that_computes_something_else_is_refused():
    class SquaringNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(8))
            self.eps = 1e-6

        def forward(self, x):
            return self.weight * x.pow(2)

    with pytest.raises(TypeError, match="SquaringNorm does not compute"):
        check_norm_map(SquaringNorm(), torch.randn(4, 8), "a test block")


def test_post_norm_families_have_no_feature_sites():
    with pytest.raises(UserInputError, match="normalises after its attention and MLP"):
        feature_sites_of(tiny_causal_lm("olmo2", VOCAB, num_hidden_layers=2))
    with pytest.raises(UserInputError, match="leave the feature and feature_hybrid"):
        feature_sites_of(
            tiny_causal_lm("opt", VOCAB, num_hidden_layers=2, do_layer_norm_before=False)
        )


# --- capture at the sites ------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_sites_capture_the_streams_the_block_reads(arch):
    """attn_in of block 1 is block 0's output; mlp_in is attn_in plus what attention adds
    (Gemma: its normed output), recorded independently from the modules themselves."""
    model = tiny_causal_lm(arch, VOCAB, num_hidden_layers=2)
    ids = torch.randint(3, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with residual_hook(model, 0) as capture:
        block0 = capture.run(ids)
    streams = {}
    for site in SITES:
        with residual_hook(model, 1, site=site) as capture:
            streams[site] = capture.run(ids)
    torch.testing.assert_close(streams["attn_in"], block0)
    layer = decoder_layers(model)[1]
    added = {}
    after = layer.post_attention_layernorm if arch == "gemma2" else layer.self_attn
    handle = after.register_forward_hook(
        lambda m, a, out: added.setdefault("out", out[0] if isinstance(out, tuple) else out)
    )
    try:
        model(input_ids=ids, use_cache=False)
    finally:
        handle.remove()
    torch.testing.assert_close(streams["mlp_in"], streams["attn_in"] + added["out"])


# --- the basis -----------------------------------------------------------------------------


def tiny_basis_setup(seed: int = 0):
    model = randomised_norms(tiny_causal_lm("llama", VOCAB, num_hidden_layers=2), seed)
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(32, generator=generator).double()
    std = (0.5 + torch.rand(32, generator=generator)).double()
    sae = TopKSAE(32, 64, 4, mean, std, generator=generator)
    rows = (torch.randn(300, 32, generator=generator) * 2).numpy()
    return model, sae, rows


def test_basis_energy_and_directions_match_a_loop_over_tokens():
    model, sae, rows = tiny_basis_setup()
    basis = measure_feature_basis(model, sae, rows, block=1, site="mlp_in", batch_size=64)
    norm = site_norm(model, 1, "mlp_in")
    gain = norm.weight.detach().double()
    energy = np.zeros(sae.d_sae)
    fired = np.zeros(sae.d_sae)
    for x in torch.as_tensor(rows):
        values, indices = sae.encode(x.unsqueeze(0))
        scale = math.sqrt(float(x.double().pow(2).mean()) + norm.variance_epsilon)
        for v, i in zip(values[0].tolist(), indices[0].tolist(), strict=True):
            energy[i] += (v / scale) ** 2
            fired[i] += v > 0
    alive = np.flatnonzero(fired > 0)
    assert basis.features.tolist() == alive.tolist()
    np.testing.assert_allclose(basis.energy.numpy(), energy[alive] / len(rows), rtol=1e-5)
    np.testing.assert_allclose(basis.firing_rate.numpy(), fired[alive] / len(rows))
    expected = sae.W_dec.detach().double()[alive] * sae.std * gain
    torch.testing.assert_close(basis.directions, expected)
    assert basis.projections == ("mlp.gate_proj", "mlp.up_proj")
    assert basis.matrices() == ["layers.1.mlp.gate_proj", "layers.1.mlp.up_proj"]


def test_basis_round_trip_and_lazy_file(tmp_path):
    model, sae, rows = tiny_basis_setup()
    basis = measure_feature_basis(model, sae, rows, block=0, site="attn_in")
    path = tmp_path / "basis.safetensors"
    save_basis(basis, path, {"sae": "here"})
    again = load_basis(path)
    for name in ("directions", "energy", "firing_rate", "features"):
        assert torch.equal(getattr(again, name), getattr(basis, name))
    assert (again.block, again.site, again.projections) == (0, "attn_in", basis.projections)
    lazy = BasisFile(path)
    assert lazy.matrices() == basis.matrices() and lazy.n_features == basis.n_features
    torch.testing.assert_close(lazy.feature_hessian("energy"), basis.feature_hessian("energy"))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptFileError, match="feature basis file"):
        BasisFile(path)


def test_uniform_weights_are_one_and_unknown_weightings_refused():
    basis = identity_basis(4, block=0, site="attn_in", projections=("self_attn.q_proj",))
    assert torch.equal(basis.weights("uniform"), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="not one of"):
        basis.weights("frequency")


# --- Hessians and distortion ---------------------------------------------------------------


def test_feature_hessian_is_the_weighted_sum_of_outer_products():
    generator = torch.Generator().manual_seed(3)
    directions = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    weights = torch.rand(7, generator=generator, dtype=torch.float64)
    brute = sum(w * torch.outer(u, u) for u, w in zip(directions, weights, strict=True))
    torch.testing.assert_close(feature_hessian(directions, weights), brute)
    with pytest.raises(ValueError, match="negative"):
        feature_hessian(directions, -weights)


def test_hybrid_hessian_blends_unit_trace_hessians():
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    b = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    h_x, h_f = a.t() @ a, b.t() @ b
    blended = hybrid_hessian(h_x, h_f, 0.5)
    torch.testing.assert_close(blended, h_x / torch.trace(h_x) + 0.5 * h_f / torch.trace(h_f))
    assert float(torch.trace(blended)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="trace"):
        hybrid_hessian(h_x, torch.zeros(4, 4), 1.0)


def test_distortions_match_their_definitions():
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    pruned = weight * (torch.rand(3, 5, generator=generator) > 0.5)
    directions = torch.randn(8, 5, generator=generator, dtype=torch.float64)
    weights = torch.rand(8, generator=generator, dtype=torch.float64)
    scaled = directions.t() * weights.sqrt()  # columns sqrt(w_i) u_i
    brute = ((weight - pruned) @ scaled).pow(2).sum() / (weight @ scaled).pow(2).sum()
    assert feature_distortion(weight, pruned, directions, weights) == pytest.approx(float(brute))
    brute_weight = (weight - pruned).pow(2).sum() / weight.pow(2).sum()
    assert weight_distortion(weight, pruned) == pytest.approx(float(brute_weight))
    # with the identity Hessian both are the same number
    identity = torch.eye(5, dtype=torch.float64)
    assert quadratic_distortion(weight, pruned, identity) == pytest.approx(float(brute_weight))


# --- the feature methods -------------------------------------------------------------------


def identity_basis(width: int, *, block: int, site: str, projections) -> FeatureBasis:
    return FeatureBasis(
        directions=torch.eye(width, dtype=torch.float64),
        energy=torch.rand(width, dtype=torch.float64),
        firing_rate=torch.ones(width, dtype=torch.float64),
        features=torch.arange(width),
        block=block,
        site=site,
        projections=tuple(projections),
    )


def calibration_ids(n: int = 4, context: int = 16) -> torch.Tensor:
    return torch.randint(3, VOCAB, (n, context), generator=torch.Generator().manual_seed(9))


def identity_bases(model) -> list[FeatureBasis]:
    sites = feature_sites_of(model)
    return [
        identity_basis(32, block=block, site=site, projections=sites[site].projections)
        for block in range(len(decoder_layers(model)))
        for site in SITES
    ]


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_feature_pruning_with_identity_basis_and_uniform_weights_is_magnitude_pruning(nm):
    """H_F = I: OBS saliency is w^2 and its updates vanish, so each matrix a basis serves
    loses exactly the weights magnitude pruning (per matrix, or per N:M group) drops."""
    model = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    dense = {name: weight_matrix(m).clone() for name, m in prunable_linears(model).items()}
    sparsity = 0.5
    report = prune_model(
        model,
        "feature",
        sparsity,
        calibration_ids(),
        nm=nm,
        feature_bases=identity_bases(model),
        weighting="uniform",
        percdamp=0.01,
    )
    pruned = {name: weight_matrix(m) for name, m in prunable_linears(model).items()}
    served = [n for n in dense if n.split(".", 2)[2] in ("self_attn.q_proj", "mlp.up_proj")]
    for name in served:
        scores = dense[name].abs()
        keep = nm_mask(scores, *nm) if nm else matrix_mask(scores, sparsity)
        assert torch.equal(pruned[name] != 0, keep), name
        assert torch.equal(pruned[name][keep], dense[name][keep]), name
    assert report["hessians"]["layers.0.self_attn.q_proj"] == "feature"
    assert report["hessians"]["layers.1.mlp.gate_proj"] == "feature"
    # attention output and MLP down projections read no residual stream: SparseGPT
    assert report["hessians"]["layers.0.self_attn.o_proj"] == "calibration"
    assert report["hessians"]["layers.1.mlp.down_proj"] == "calibration"
    assert report["hessian_counts"] == {"feature": 10, "calibration": 4}
    assert report["feature_basis"]["weighting"] == "uniform"


def test_matrices_without_a_basis_fall_back_to_sparsegpt_exactly():
    """A block without bases is pruned by SparseGPT: same weights as plain SparseGPT."""
    reference = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    model = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    bases = [b for b in identity_bases(model) if b.block == 1]
    prune_model(reference, "sparsegpt", 0.5, calibration_ids())
    report = prune_model(model, "feature_hybrid", 0.5, calibration_ids(), feature_bases=bases)
    for name, module in prunable_linears(model).items():
        if name.startswith("layers.0."):
            assert report["hessians"][name] == "calibration"
            assert torch.equal(
                weight_matrix(module), weight_matrix(prunable_linears(reference)[name])
            )
    assert report["hessians"]["layers.1.self_attn.k_proj"] == "hybrid"
    assert report["feature_basis"]["hybrid_lambda"] == 1.0


def test_hybrid_with_lambda_zero_is_sparsegpt():
    reference = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    model = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    prune_model(reference, "sparsegpt", 0.5, calibration_ids())
    prune_model(
        model,
        "feature_hybrid",
        0.5,
        calibration_ids(),
        feature_bases=identity_bases(model),
        hybrid_lambda=0.0,
    )
    for name, module in prunable_linears(model).items():
        expected = weight_matrix(prunable_linears(reference)[name])
        torch.testing.assert_close(weight_matrix(module), expected, rtol=1e-4, atol=1e-5)


def test_feature_methods_refuse_missing_or_foreign_bases():
    model = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    with pytest.raises(ValueError, match="needs feature_bases"):
        prune_model(model, "feature", 0.5, calibration_ids())
    foreign = identity_basis(32, block=7, site="attn_in", projections=("self_attn.q_proj",))
    with pytest.raises(ValueError, match="lacks"):
        prune_model(model, "feature", 0.5, calibration_ids(), feature_bases=[foreign])


# --- tables --------------------------------------------------------------------------------


def test_rank_correlation_agrees_with_scipy_and_drops_nans():
    x = [0.1, 0.5, 0.2, 0.9, 0.4, float("nan")]
    y = [1.0, 3.0, 2.5, 4.0, 2.0, 7.0]
    rho, p, note = rank_correlation(x, y)
    assert rho == pytest.approx(scipy_stats.spearmanr(x[:5], y[:5]).statistic)
    assert note == "exact permutation p" and 0 < p <= 1
    many = np.arange(12.0)
    rho, p, note = rank_correlation(many, many**2)
    assert rho == pytest.approx(1.0) and note == "t approximation p"
    assert math.isnan(rank_correlation([1, 2], [2, 1])[0])


def distortion_rows(scale: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "matrix": ["layers.0.self_attn.q_proj", "layers.0.self_attn.o_proj"],
            "block": [0, 0],
            "site": ["attn_in", None],
            "sparsity": [0.5, 0.5],
            "weight_distortion": [0.2 * scale, 0.4 * scale],
            "input_distortion": [0.15 * scale, None],
            "feature_distortion_uniform": [0.1 * scale, None],
            "feature_distortion_energy": [0.3 * scale, None],
            "n_features": [10, None],
        }
    )


def test_condition_distortions_average_the_served_matrices():
    summary = condition_distortions(distortion_rows(1.0))
    assert summary["weight_distortion"] == pytest.approx(0.2)
    assert summary["weight_distortion_all"] == pytest.approx(0.3)
    assert summary["feature_distortion_energy"] == pytest.approx(0.3)
    assert summary["n_matrices_with_basis"] == 1 and summary["n_matrices"] == 2


def test_feature_pruning_table_joins_outcomes_and_ranks_conditions():
    conds = {"magnitude-0.4": 1.0, "wanda-0.4": 2.0, "feature-0.4": 3.0}
    label = "trained here: dense seed 0"
    perplexity = pd.DataFrame(
        {"model": "m", "condition": ["dense", *conds], "perplexity": [10.0, 11.0, 12.0, 15.0]}
    )
    survival = pd.DataFrame(
        [
            {
                "model": "m",
                "layer": 1,
                "sae": label,
                "condition": c,
                "method": c.split("-")[0],
                "sparsity": 0.4,
                "definition": d,
                "tau": 0.7,
                "survival": s,
            }
            for c, k in conds.items()
            for d, s in (("activation", 1 - 0.1 * k), ("matched_noise", 0.95))
        ]
    )
    decoder = pd.DataFrame(
        [
            {
                "model": "m",
                "layer": 1,
                "condition": c,
                "definition": d,
                "tau": 0.7,
                "mnn_mean": 0.5,
                "ratio_to_floor": 1 - 0.05 * k,
            }
            for c, k in conds.items()
            for d in ("paired_init", "cross_seed")
        ]
    )
    quintiles = pd.DataFrame(
        [
            {
                "model": "m",
                "layer": 1,
                "sae": label,
                "condition": c,
                "definition": "activation",
                **{f"Q{q}": 0.1 * q for q in range(1, 6)},
            }
            for c in conds
        ]
    )
    table = feature_pruning_table(
        {("m", c): distortion_rows(k) for c, k in conds.items()},
        perplexity,
        survival,
        decoder,
        quintiles,
        sae_label=label,
        activation_tau=0.7,
        decoder_tau=0.7,
    )
    assert table["condition"].tolist() == list(conds)
    assert table["perplexity_increase"].tolist() == pytest.approx([0.1, 0.2, 0.5])
    assert table["noise_control_survival"].tolist() == [0.95] * 3
    assert table["Q3"].tolist() == pytest.approx([0.3] * 3)
    ranks = distortion_ranks(table)
    assert set(ranks["outcome"]) == {"perplexity_increase", "activation_loss", "decoder_loss"}
    assert ranks["spearman_rho"].tolist() == pytest.approx([1.0] * len(ranks))
    assert set(ranks["n_conditions"]) == {3}


# --- config, plan and lineage --------------------------------------------------------------


def feature_config(**feature) -> dict:
    from test_config import load, validated

    config = load()
    config["pruning"]["grid"]["feature"] = [0.4]
    config["pruning"]["grid"]["feature_hybrid_2of4"] = [0.5]
    config["pruning"]["feature"] = feature
    return validated(config)


def test_feature_methods_need_the_feature_block_and_real_blocks():
    from test_config import load, validated

    config = load()
    del config["pruning"]["feature"]
    config["pruning"]["grid"]["feature"] = [0.4]
    with pytest.raises(UserInputError, match=r"pruning.grid lists feature, .*pruning.feature"):
        validated(config)
    config["pruning"]["feature"] = {"blocks": [1, 4]}
    with pytest.raises(UserInputError, match="block 4, but models.tiny has 4 blocks"):
        validated(config)


def test_feature_prunes_read_the_bases_of_every_block_and_site():
    from prunescope.plan import analysis_targets, pruning_bases

    config = feature_config()
    bases = pruning_bases(config, "tiny", "feature_hybrid_2of4")
    assert len(bases) == 4 * 2
    assert bases[:2] == [
        "results/feature_basis/tiny/L0.attn_in/basis.safetensors",
        "results/feature_basis/tiny/L0.mlp_in/basis.safetensors",
    ]
    assert pruning_bases(config, "tiny", "sparsegpt") == []
    assert "results/tables/feature_pruning.csv" in analysis_targets(config)
    config["pruning"]["feature"]["blocks"] = [2]
    assert len(pruning_bases(config, "tiny", "feature")) == 2


def test_a_basis_sae_edit_reaches_exactly_the_feature_conditions():
    from prunescope.conditions import conditions
    from prunescope.lineage import model_lineage

    config = feature_config()

    def lineages():
        return {c: model_lineage(config, "tiny", c) for c in conditions(config, "tiny")}

    before = lineages()
    config["pruning"]["feature"]["sae"] = {"steps": 10}
    after = lineages()
    changed = {c for c in before if before[c] != after[c]}
    assert changed == {"feature-0.4", "feature_hybrid_2of4-0.5"}
    before = after
    config["pruning"]["feature"]["hybrid_lambda"] = 2.0
    after = lineages()
    assert {c for c in before if before[c] != after[c]} == {"feature_hybrid_2of4-0.5"}


def test_feature_arguments_read_bases_lazily_and_pass_the_settings(tmp_path):
    from prunescope.pruning import feature_arguments

    assert feature_arguments(None, []) == {}
    model, sae, rows = tiny_basis_setup()
    path = tmp_path / "basis.safetensors"
    save_basis(measure_feature_basis(model, sae, rows, block=1, site="attn_in"), path)
    options = {"weighting": "uniform", "hybrid_lambda": 0.25, "basis": {"seed": 0}}
    arguments = feature_arguments(options, [str(path)])
    assert arguments["weighting"] == "uniform" and arguments["hybrid_lambda"] == 0.25
    assert [type(b) for b in arguments["feature_bases"]] == [BasisFile]


def test_a_feature_prune_is_sized_with_one_basis_and_its_hessian():
    from prunescope.memory import job_estimate

    config = feature_config(sae={"expansion": 4})
    sparsegpt = job_estimate(config, "prune_model", {"model": "tiny", "method": "sparsegpt"})
    feature = job_estimate(config, "prune_model", {"model": "tiny", "method": "feature"})
    d = 128
    basis = 2 * 4 * d * d * 8 + 2 * d * d * 8
    assert feature.bytes == sparsegpt.bytes + basis


def test_input_second_moment_is_the_mean_outer_product_of_the_norm_output():
    model = randomised_norms(tiny_causal_lm("gpt2", VOCAB, num_hidden_layers=2))
    norm = site_norm(model, 1, "mlp_in")
    rows = np.random.default_rng(0).normal(size=(37, 32)).astype(np.float32)
    seen = norm(torch.as_tensor(rows)).double()
    brute = sum(torch.outer(n, n) for n in seen) / len(rows)
    torch.testing.assert_close(input_second_moment(norm, rows, batch_size=8), brute)


def test_distortion_frame_measures_served_matrices_in_every_space():
    from prunescope.feature_pruning.jobs import distortion_frame

    dense = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    pruned = tiny_causal_lm("llama", VOCAB, num_hidden_layers=2)
    prune_model(pruned, "magnitude", 0.5, None)
    bases = [b for b in identity_bases(dense) if b.block == 0]
    moment = torch.eye(32, dtype=torch.float64) * 3
    frame = distortion_frame(dense, pruned, bases, [moment, moment]).set_index("matrix")
    q = frame.loc["layers.0.self_attn.q_proj"]
    # identity directions and an identity moment: every space is weight space
    for column in ("input_distortion", "feature_distortion_uniform"):
        assert q[column] == pytest.approx(q["weight_distortion"])
    assert q["site"] == "attn_in" and q["n_features"] == 32
    assert np.isnan(frame.loc["layers.1.self_attn.q_proj", "feature_distortion_energy"])
    assert frame["sparsity"].between(0.45, 0.55).all()


def test_a_post_norm_hub_model_is_refused_before_any_job(tmp_path):
    from test_config import load, validated

    folder = tmp_path / "olmo"
    tiny_causal_lm("olmo2", VOCAB, num_hidden_layers=2).save_pretrained(folder)
    config = load()
    config["models"]["olmo"] = {
        "source": "hf",
        "name": str(folder),
        "corpus": "stdlib",
        "layers": [1],
    }
    with pytest.raises(UserInputError, match=r"models.olmo \(OLMo 2\) normalises after"):
        validated(config)


def test_cached_blocks_follow_each_model_s_cached_layers():
    from prunescope.lineage import feature_blocks

    config = feature_config(blocks="cached")
    assert feature_blocks(config, "tiny") == [2]
    config["models"]["tiny"]["layers"] = [3, 1]
    assert feature_blocks(config, "tiny") == [1, 3]
