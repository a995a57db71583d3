"""The Snakemake workflow itself: dry-runs of every preset, lint, a smoke run, partial reruns."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import ROOT, copy_workflow, planned_jobs
from conftest import run_snakemake as snakemake

PRESETS = ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml", "configs/feature.yaml"]
SMOKE_CONDITIONS = {"dense", "magnitude-0.3", "wanda-0.3", "feature-0.3", "feature_hybrid_2of4-0.5"}

# every test here starts Snakemake
pytestmark = pytest.mark.workflow


@pytest.mark.parametrize("preset", PRESETS)
def test_dry_run_of_every_preset(preset, tmp_path):
    out = snakemake("-n", "--configfile", str(ROOT / preset), "--directory", str(tmp_path))
    jobs = planned_jobs(out)
    assert jobs["train_sae"] >= 6 and jobs["capture_activations"] >= 3
    if preset.endswith("paper.yaml"):
        assert jobs["save_hub_model"] == 3 and "train_local_model" not in jobs
    # every preset brings in an SAE trained elsewhere (the paper's: Gemma Scope for both
    # Gemma models), applied to every condition and followed under every pruned one
    pretrained = {"paper.yaml": 2}.get(Path(preset).name, 1)
    assert jobs["import_pretrained_sae"] == pretrained
    assert jobs["evaluate_pretrained_transfer"] > jobs["pretrained_activation_survival"] > 0
    # pruning.feature: two basis SAEs per listed block, a distortion per pruned condition
    blocks = {"config.yaml": 1, "smoke.yaml": 2, "feature.yaml": 4}.get(Path(preset).name, 0)
    assert jobs.get("train_site_sae", 0) == jobs.get("measure_feature_basis", 0) == 2 * blocks
    if blocks:
        assert jobs["measure_distortion"] == jobs["prune_model"]
        assert jobs["feature_pruning_table"] == 1


def _unknown_key(c):
    c["sae"]["learning_rate"] = 0.1


def _empty_seeds(c):
    c["sae"]["seeds"] = []


def _sparsity_of_one(c):
    c["pruning"]["grid"]["magnitude"] = [0.2, 1.0]


def _layer_past_depth(c):
    c["models"]["tiny"]["layers"] = [9]


def _wrong_type(c):
    c["sae"]["k"] = "sixty-four"


def _removed_key(c):
    c["analysis"]["survival_all_seeds"] = True


def _pretrained_sae_not_on_disk(c):
    c["models"]["tiny"]["pretrained_saes"] = {2: {"path": "/nowhere/gemma-scope/params.npz"}}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_unknown_key, "learning_rate"),
        (_empty_seeds, r"\[\] should be non-empty"),
        (_sparsity_of_one, "1.0 is greater than or equal to the maximum of 1"),
        (_layer_past_depth, "layer 9 is past the model's depth"),
        (_wrong_type, "'sixty-four' is not of type 'integer'"),
        (_removed_key, r"analysis\.survival_all_seeds was removed because decoder survival now"),
        (
            _pretrained_sae_not_on_disk,
            r"models\.tiny\.pretrained_saes\.2: SAE path '/nowhere/gemma-scope/params\.npz' "
            "does not exist",
        ),
    ],
)
def test_a_bad_config_stops_before_any_job(edit, message, tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    edit(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    args = ("--cores", "1", "--configfile", str(bad), "--directory", str(tmp_path))
    out = snakemake(*args, check=False)
    assert re.search(message, out), out[-2000:]
    assert "Job stats" not in out and not (tmp_path / "results").exists()


def _model_named_dot_dot(c):
    c["models"][".."] = c["models"].pop("tiny")


def _broken_yaml(path: Path) -> None:
    path.write_text("sae:\n  k: [8, 16\n  lr: 0.001\n")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_model_named_dot_dot, r"models has '\.\.', which cannot be a name"),
        (_broken_yaml, r"config file config.yaml is not valid YAML at line 3, column 5"),
    ],
)
def test_a_bad_name_or_broken_yaml_stops_before_any_job(edit, message, tmp_path):
    """Through the Snakefile itself: config.yaml is the one Snakemake reads by default."""
    work = copy_workflow(tmp_path / "work")
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    (work / "results").mkdir()
    (work / "results/keep.txt").write_text("a result")
    if edit is _broken_yaml:
        edit(work / "config.yaml")
    else:
        edit(config)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake("--cores", "1", cwd=work, check=False)
    assert re.search(message, out), out[-2000:]
    assert "Job stats" not in out and (work / "results/keep.txt").read_text() == "a result"


def test_dashes_in_names_and_tiny_sparsities_plan_like_any_other(tmp_path):
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    config["models"]["gemma-2-2b"] = config["models"].pop("tiny")
    config["corpora"]["fineweb-edu"] = config["corpora"].pop("stdlib")
    config["models"]["gemma-2-2b"]["corpus"] = "fineweb-edu"
    config["models"]["gemma-2-2b"]["pretrained_saes"] = {
        1: "results/saelens/gemma-2-2b/dense/L1/seed0"
    }
    config["pruning"]["grid"]["magnitude"] = [0.00001, 0.3]
    path = tmp_path / "dashes.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path))
    assert "results/models/gemma-2-2b/magnitude-0.00001" in out
    assert "results/corpus/fineweb-edu/train.jsonl" in out
    assert "results/pretrained_sae/gemma-2-2b/L1" in out


def test_rule_files_pass_lint_and_format():
    out = snakemake("--lint", check=False)
    assert "Lints for" not in out, out[-3000:]
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stderr


@pytest.mark.slow
def test_smoke_run_produces_every_data_artifact(smoke_run):
    results = smoke_run / "results"
    assert not list(results.rglob("*.partial"))
    for cond in sorted(SMOKE_CONDITIONS):
        assert (results / f"perplexity/tiny/{cond}.json").is_file()
        with h5py.File(results / f"activations/tiny/{cond}/L1.h5") as f:
            assert f["train"].dtype == "float32" and f["train"].chunks is not None
            assert f.attrs["mean"].dtype == "float64" and f.attrs["condition"] == cond
        for seed in (0, 1):
            sae = results / f"sae/tiny/{cond}/L1/seed{seed}"
            assert {p.name for p in sae.iterdir()} == {
                "sae.safetensors",
                "cfg.json",
                "metrics.json",
            }
    report = yaml.safe_load((results / "models/tiny/wanda-0.3/pruning_report.json").read_text())
    assert report["overall_sparsity"] == pytest.approx(0.3, abs=0.01)
    assert (results / "logs/train_sae/tiny/dense/L1/seed0.log").stat().st_size > 0
    report = json.loads((results / "models/tiny/feature-0.3/pruning_report.json").read_text())
    # q/k/v and gate/up of both blocks by the feature Hessian; o and down by SparseGPT's
    assert report["hessian_counts"] == {"feature": 10, "calibration": 4}
    for block in (0, 1):
        for site in ("attn_in", "mlp_in"):
            with h5py.File(results / f"feature_basis/tiny/L{block}.{site}/activations.h5") as f:
                assert f.attrs["site"] == site and f.attrs["layer"] == block
    for cond in sorted(SMOKE_CONDITIONS - {"dense"}):
        for top in (f"tiny/L1/{cond}.h5", f"tiny/L1/pretrained/{cond}.h5"):
            with h5py.File(results / "top_activations" / top) as f:
                assert set(f["top"]) == {"dense", "pruned"} and set(f["contexts"]) == {
                    "rows",
                    "dense",
                    "pruned",
                }
    for cond in sorted(SMOKE_CONDITIONS):  # the reverse view keeps its SAE's top activations
        with h5py.File(results / f"top_activations/tiny/L1/reverse/{cond}_seed1.h5") as f:
            assert set(f["top"]) == {"own"} and set(f["contexts"]) == {"rows", "own"}
    findings = (results / "findings.html").read_text()
    assert "<li>" in findings and "Study ALIGN" in findings and "data:image/png" in findings
    page = (results / "browser/tiny/L1.html").read_text()
    assert page.count('class="card ') > 0 and all(c in page for c in SMOKE_CONDITIONS - {"dense"})


@pytest.mark.slow
def test_nothing_reruns_without_a_change(smoke_run):
    out = snakemake("-n", "--configfile", "configs/smoke.yaml", cwd=smoke_run)
    assert "Nothing to be done" in out


def _edited(smoke_run: Path, edit) -> dict[str, int]:
    config = yaml.safe_load((smoke_run / "configs/smoke.yaml").read_text())
    edit(config)
    path = smoke_run / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return planned_jobs(snakemake("-n", "--configfile", str(path), cwd=smoke_run))


UPSTREAM_OF_SAES = {
    "prepare_corpus",
    "train_tokenizer",
    "train_local_model",
    "prune_model",
    "evaluate_perplexity",
    "capture_activations",
    "perplexity_table",
}


@pytest.mark.slow
def test_editing_an_sae_setting_reruns_only_the_saes_and_what_follows(smoke_run):
    jobs = _edited(smoke_run, lambda c: c["sae"].update(k=4))
    # one seed pair within each of the 5 conditions (the dense one is the seed floor), and
    # every dense x pruned seed pair (2 x 2) of the 4 pruned conditions
    assert jobs["train_sae"] == 10 and jobs["match_dictionaries"] == 21
    # the feature bases' SAEs follow sae too, and with them the two feature prunes
    assert jobs["train_site_sae"] == 4 and jobs["prune_model"] == 2
    assert jobs["capture_activations"] == 2 and jobs["evaluate_perplexity"] == 2
    assert not {"prepare_corpus", "train_tokenizer", "train_local_model"} & set(jobs)


@pytest.mark.slow
def test_editing_a_basis_sae_setting_reruns_only_the_feature_branch(smoke_run):
    jobs = _edited(smoke_run, lambda c: c["pruning"]["feature"]["sae"].update(steps=40))
    assert jobs["train_site_sae"] == 4 and jobs["measure_feature_basis"] == 4
    # the feature prunes and what follows them; every condition's distortion reads the bases
    assert jobs["prune_model"] == 2 and jobs["measure_distortion"] == 4
    assert jobs["train_sae"] == 4 and "capture_site_activations" not in jobs
    assert not {"prepare_corpus", "train_tokenizer", "train_local_model"} & set(jobs)


@pytest.mark.slow
def test_editing_a_pruning_setting_reruns_that_method_and_what_follows(smoke_run):
    jobs = _edited(smoke_run, lambda c: c["pruning"]["calibration"].update(n_tokens=1024))
    # Wanda and the feature methods read calibration data; magnitude does not, so only
    # their branches rerun.
    assert jobs["prune_model"] == 3 and jobs["capture_activations"] == 3
    assert jobs["evaluate_perplexity"] == 3 and jobs["train_sae"] == 6
    assert jobs["perplexity_table"] == 1
    assert "train_local_model" not in jobs and "prepare_corpus" not in jobs


@pytest.mark.slow
def test_editing_an_analysis_setting_reruns_only_that_analysis(smoke_run):
    jobs = _edited(smoke_run, lambda c: c["analysis"].update(bootstrap=300))
    # record_config: the report's copy of the config follows every edit
    assert set(jobs) == {
        "quintile_survival",
        "activation_survival_table",
        "feature_pruning_table",  # reads the activation survival tables
        "findings",  # reads them too
        "record_config",
        "all",
    }


@pytest.mark.slow
def test_editing_the_feature_sample_rebuilds_only_the_feature_pages(smoke_run):
    jobs = _edited(smoke_run, lambda c: c.setdefault("browser", {}).update(per_quintile=1))
    assert set(jobs) == {"feature_pages", "record_config", "all"}


@pytest.mark.slow
def test_keeping_more_top_activations_reruns_the_survival_pass_not_the_caches(smoke_run):
    jobs = _edited(smoke_run, lambda c: c.setdefault("browser", {}).update(top_n=10))
    assert jobs["activation_survival"] == 4 and jobs["pretrained_activation_survival"] == 4
    assert jobs["feature_pages"] == 1
    assert not UPSTREAM_OF_SAES & set(jobs) and "train_sae" not in jobs


ALIGN_UPSTREAM = {"make_align_dataset", "train_align_net", "estimate_align_hessian"}


@pytest.mark.slow
def test_editing_finetuning_reruns_only_finetuning_and_its_tables(smoke_run):
    jobs = _edited(smoke_run, lambda c: c["align"]["finetuning"].update(epochs=3))
    # one fine-tuning job per task x structure x trial; figures read the accuracy table
    assert jobs["finetune_align_nets"] == 4 and jobs["align_accuracy_table"] == 1
    rerun = {"finetune_align_nets", "align_accuracy_table", "plot_align_figure", "record_config"}
    rerun |= {"align_basis_table"}  # it reads the accuracy table
    rerun |= {"findings"}  # it reads the accuracy summary
    assert set(jobs) <= rerun | {"all"}


@pytest.mark.slow
def test_editing_the_mip_time_limit_reruns_the_oracle_and_what_follows(smoke_run):
    jobs = _edited(smoke_run, lambda c: c["align"]["mip"].update(time_limit=0.1))
    assert jobs["solve_align_mip"] == 8 and jobs["prune_align_nets"] == 4
    assert not ALIGN_UPSTREAM & set(jobs) and not UPSTREAM_OF_SAES & set(jobs)
    assert "sweep_align_magnitude" not in jobs


@pytest.mark.slow
def test_smoke_run_builds_every_align_table_and_figure(smoke_run):
    import pandas as pd

    results = smoke_run / "results/align"
    accuracy = pd.read_csv(results / "tables/accuracy.csv")
    methods = {"mp", "obd", "obs", "mip", "flo", "obs_mask", "mip_mask"}
    methods |= {"mip_sae", "flo_sae", "mip_ica", "flo_ica"}
    assert set(accuracy["method"]) == methods
    assert set(accuracy["stage"]) == {"pruned", "finetuned"}
    assert set(accuracy["structure"]) == {"unstructured", "2of4"}
    assert accuracy["test_accuracy"].between(0, 1).all()
    mip = pd.read_csv(results / "tables/mip_solves.csv").set_index(["task", "structure"])
    # 16 literals have few enough masks to enumerate: every neuron is proven optimal
    dnf = mip.loc[("dnf16", "unstructured")]
    assert (dnf["proven_optimal"] == dnf["neurons"]).all() and (dnf["neurons"] == 16).all()
    training = pd.read_csv(results / "tables/training_codes.csv")
    assert "4P-positive" in training and training["epoch"].max() == 5
    recovery = pd.read_csv(results / "tables/basis_recovery.csv").set_index(["task", "estimator"])
    assert len(recovery) == 4 and recovery["mean_best_cosine_mean"].between(0, 1).all()
    compared = pd.read_csv(results / "tables/estimated_basis.csv")
    assert {"mip_sae", "flo_ica", "mip", "obs", "mp"} <= set(compared["method"])
    assert compared["accuracy_finetuned_mean"].between(0, 1).all()
    for figure in ("fig2", "fig4", "fig5", "fig6", "figA1", "figA3", "figA6", "figA7", "figA8"):
        assert (results / f"figures/{figure}.png").stat().st_size > 1000, figure
    for picture in ("dnf16/fig1", "dnf16/fig3", "dnf16/figA4", "digits/figA2", "digits/figA5"):
        assert (results / f"figures/{picture}.png").stat().st_size > 1000, picture


TABLE_COLUMNS = {
    "table1": {"model", "condition", "method", "sparsity", "perplexity", "n_tokens"},
    "table2": {"condition", "fvu", "l0", "n_eval_tokens"},
    "table3": {
        "condition",
        "definition",
        "n_pairs",
        "Q1",
        "Q1_to_floor",
        "Q5",
        "q1_q5_ratio",
        "spearman_rho",
        "spearman_p_exact",
        "q1_minus_q5_low",
        "feature_spearman_rho",
        "n_alive",
    },
    "table4": {
        "side",
        "selection",
        "robust_kl",
        "fragile_kl",
        "delta_pct",
        "n_robust",
        "robust_fired_fraction",
        "fragile_kl_when_fired",
        "n_prompts",
    },
    "tableB1": {"condition", "fvu", "alive", "n"},
    "seed_stability": {"condition", "tau", "mnn_mean", "mnn_std", "n_pairs"},
    "survival": {
        "condition",
        "definition",
        "tau",
        "n_pairs",
        "one_way_mean",
        "greedy_mean",
        "seed_floor_mnn",
        "ratio_to_floor",
    },
    "quintile_survival": {
        "condition",
        "definition",
        "tau",
        "quintile",
        "survival",
        "floor",
        "ratio_to_floor",
        "n_pairs",
    },
    "logistic_fit": {"method", "definition", "tau", "term", "coef", "se", "auc", "accuracy", "n"},
    "activation_survival": {"sae", "condition", "definition", "tau", "n_survived", "survival"},
    "table3_activation": {"sae", "condition", "definition", "Q1", "Q5", "spearman_rho"},
    "activation_quintile_survival": {"sae", "condition", "definition", "quintile", "survival"},
    "new_features": {"condition", "tau", "n_alive", "n_new", "floor_new_fraction"},
    "feature_pruning": {
        "condition",
        "perplexity_increase",
        "activation_survival",
        "noise_control_survival",
        "Q1",
        "decoder_cross_seed",
        "weight_distortion",
        "feature_distortion_uniform",
        "feature_distortion_energy",
    },
    "distortion_ranks": {"distortion", "outcome", "spearman_rho", "p_value", "n_conditions"},
}


@pytest.mark.slow
def test_smoke_run_builds_every_table_and_figure(smoke_run):
    import pandas as pd
    import torch

    from prunescope.pretrained import detect_format, load_pretrained_sae
    from prunescope.sae import load_sae
    from prunescope.survival import as_latent_encoder

    for name, columns in TABLE_COLUMNS.items():
        table = pd.read_csv(smoke_run / f"results/tables/{name}.csv")
        assert columns <= set(table.columns), name
        assert len(table) > 0, name
    table3 = pd.read_csv(smoke_run / "results/tables/table3.csv")
    assert set(table3["condition"]) == SMOKE_CONDITIONS
    assert set(table3["definition"]) == {"paired_init", "cross_seed", "seed_floor"}
    assert set(table3.loc[table3["condition"] == "dense", "definition"]) == {"seed_floor"}
    for name in ("survival", "quintile_survival"):
        table = pd.read_csv(smoke_run / f"results/tables/{name}.csv")
        assert set(table["definition"]) >= {"paired_init", "cross_seed"}, name
    logistic = pd.read_csv(smoke_run / "results/tables/logistic_fit.csv")
    assert set(logistic["definition"]) == {"activation", "paired_init", "cross_seed"}
    assert ((table3[["Q1", "Q5"]] >= 0) & (table3[["Q1", "Q5"]] <= 1)).all().all()
    for name in [f"fig{i}" for i in range(1, 7)] + ["fig4_activation", "feature_distortion"]:
        for suffix in ("png", "pdf"):
            assert (smoke_run / f"results/figures/{name}.{suffix}").stat().st_size > 1000
    survival = pd.read_csv(smoke_run / "results/tables/activation_survival.csv")
    assert survival["survival"].between(0, 1).all() and (survival["n_alive"] > 0).all()
    assert set(survival["definition"]) == {"activation", "matched_noise"}
    for cfg in (smoke_run / "results/sae").glob("*/*/L*/seed*/cfg.json"):
        exported = smoke_run / "results/saelens" / cfg.parent.relative_to(smoke_run / "results/sae")
        assert detect_format(exported) == "saelens", exported
        x = torch.randn(64, load_sae(cfg.parent).d_model) * 3
        ours = as_latent_encoder(load_sae(cfg.parent)).encode(x)
        torch.testing.assert_close(load_pretrained_sae(exported).encode(x), ours, atol=1e-4, rtol=0)
    new = pd.read_csv(smoke_run / "results/tables/new_features.csv")
    assert set(new["condition"]) == SMOKE_CONDITIONS
    assert new["new_fraction"].between(0, 1).all()
    check_pretrained_sae_tables(smoke_run)


def check_pretrained_sae_tables(run: Path) -> None:
    """The smoke config's pretrained SAE is the reference SAE's own SAELens export, read back
    through the loader: Table 2 and the activation tables must give it the numbers of the
    SAE it came from, under its own label."""
    import pandas as pd

    from prunescope.io import read_json

    label = "SAELens export of dense seed 0"
    record = read_json(run / "results/pretrained_sae/tiny/L1/source.json")
    assert record["label"] == label and record["format"] == "saelens"
    table2 = pd.read_csv(run / "results/tables/table2.csv")
    assert table2["sae_kind"].tolist() == ["trained"] * 5 + ["pretrained"] * 5
    trained, pretrained = (table2[table2["sae_kind"] == kind] for kind in ("trained", "pretrained"))
    assert set(pretrained["sae"]) == {label} and set(pretrained["sae_format"]) == {"saelens"}
    for column in ("fvu", "fvu_over_dense", "l0"):
        assert pretrained[column].to_numpy() == pytest.approx(trained[column].to_numpy(), rel=1e-4)
    assert pretrained["alive"].tolist() == trained["alive"].tolist()
    for name in ("activation_survival", "table3_activation"):
        table = pd.read_csv(run / f"results/tables/{name}.csv")
        ours, theirs = (
            table[table["sae"] != label].reset_index(drop=True),
            table[table["sae"] == label].reset_index(drop=True),
        )
        assert len(theirs) == len(ours) > 0, name
        # float32 folding may move a feature across a threshold: a few in hundreds
        numbers = ours.select_dtypes("number").columns
        counts = [c for c in numbers if c.startswith("n_") or c == "n"]
        rates = numbers.difference(counts)
        pd.testing.assert_frame_equal(theirs[rates], ours[rates], rtol=0, atol=0.02)
        assert (theirs[counts] - ours[counts]).abs().max().max() <= 2, name


def _byte_level_tokenizer(text: str, vocab_size: int):
    """A byte-level BPE trained on ``text``: real subwords, as a hub model's tokenizer has."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<bos>", "<eos>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator([text], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


@pytest.mark.slow
def test_a_tiny_gpt2_and_a_tiny_pythia_run_the_whole_lm_study(tmp_path):
    """GPT-2 (Conv1D projections) and GPT-NeoX (fused q/k/v, parallel residual) folders,
    configured as hub models: every LM table is built from them."""
    import inspect
    import os

    import pandas as pd
    from tiny_lms import tiny_causal_lm

    text = inspect.getsource(os)  # a few thousand lines of real Python
    models = {}
    for arch in ("gpt2", "gpt_neox"):
        folder = tmp_path / f"hub-{arch}"
        tokenizer = _byte_level_tokenizer(text, 512)
        model = tiny_causal_lm(
            arch, len(tokenizer), num_hidden_layers=2, max_position_embeddings=128
        )
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        models[arch] = folder
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    config.pop("align", None)
    config["models"] = {
        arch: {"source": "hf", "name": str(folder), "corpus": "stdlib", "layers": [1]}
        for arch, folder in models.items()
    }
    config["analysis"]["ablation"]["conditions"] = {arch: "wanda-0.3" for arch in models}
    work = copy_workflow(tmp_path / "work")
    (work / "families.yaml").write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "--configfile", "families.yaml", cwd=work)
    table1 = pd.read_csv(work / "results/tables/table1.csv")
    assert set(table1["model"]) == set(models)
    for arch in models:
        report = json.loads(
            (work / f"results/models/{arch}/wanda-0.3/pruning_report.json").read_text()
        )
        assert len(report["per_matrix"]) == 2 * 4  # two blocks, four projections each
        for name, matrix in report["per_matrix"].items():
            assert matrix["sparsity"] == pytest.approx(0.3, abs=0.02), (arch, name)
    for name in ("table2", "table3", "table4", "table3_activation"):
        table = pd.read_csv(work / f"results/tables/{name}.csv")
        assert set(table["model"]) == set(models), name
