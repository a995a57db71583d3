"""Saved figures are reproducible: the same figure gives the same bytes, PNG and PDF."""

from __future__ import annotations

import struct

import pandas as pd
import pytest

from prunescope.figures import line_by_sparsity, save_figure, transfer_lines


def _figure():
    frame = pd.DataFrame(
        {
            "model": "tiny",
            "layer": 1,
            "method": ["dense", "magnitude", "magnitude", "wanda", "wanda"],
            "sparsity": [0.0, 0.3, 0.5, 0.3, 0.5],
            "perplexity": [20.0, 24.5, 31.0, 22.0, 27.5],
        }
    )
    return line_by_sparsity(frame, "perplexity", None, "perplexity", "Perplexity ↑", True)


def _png_chunk_types(data: bytes) -> list[bytes]:
    types, at = [], 8  # past the signature
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        types.append(data[at + 4 : at + 8])
        at += 12 + length  # length, type, data, CRC
    return types


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_saving_the_same_figure_twice_gives_the_same_bytes(tmp_path, suffix):
    first, second = tmp_path / "a" / "fig.png", tmp_path / "b" / "fig.png"
    save_figure(_figure(), first)
    save_figure(_figure(), second)
    data = first.with_suffix(f".{suffix}").read_bytes()
    assert len(data) > 1000
    assert data == second.with_suffix(f".{suffix}").read_bytes()
    # two saves within one second would agree even with a date in the file: check for none
    if suffix == "pdf":
        assert b"/CreationDate" not in data and b"/ModDate" not in data
    else:
        assert b"tIME" not in _png_chunk_types(data) and b"IEND" in _png_chunk_types(data)


def _survival_rows():
    rows = []
    for definition, level in (("paired_init", 0.9), ("cross_seed", 0.05)):
        for method in ("magnitude", "wanda"):
            for sparsity in (0.3, 0.5):
                rows.append(
                    {
                        "model": "tiny",
                        "layer": 1,
                        "method": method,
                        "sparsity": sparsity,
                        "definition": definition,
                        "mnn_mean": level - sparsity / 10,
                        "mnn_std": 0.01,
                        "seed_floor_mnn": 0.06,
                    }
                )
    return pd.DataFrame(rows)


def test_survival_definitions_get_their_own_line_style_and_the_floor_a_line():
    fig = line_by_sparsity(
        _survival_rows(),
        "mnn_mean",
        "mnn_std",
        "MNN",
        "RQ2",
        False,
        style="definition",
        floor="seed_floor_mnn",
    )
    handles, labels = fig.axes[0].get_legend_handles_labels()
    drawn = dict(zip(labels, handles, strict=True))
    assert labels[0] == "dense seed floor" and drawn["dense seed floor"].get_ydata()[0] == 0.06
    assert labels[1:] == [
        f"{method} {definition}"
        for method in ("magnitude", "wanda")
        for definition in ("paired_init", "cross_seed")
    ]
    # an errorbar's first artist is its data line
    assert drawn["wanda paired_init"][0].get_linestyle() == "-"
    assert drawn["wanda cross_seed"][0].get_linestyle() == "--"


def test_quintile_figures_tell_definitions_and_the_floor_apart():
    from prunescope.figures import quintile_by_method, quintile_lines

    table3 = pd.DataFrame(
        [
            {"model": "tiny", "layer": 1, "method": m, "sparsity": s, "definition": d}
            | {f"Q{q}": v for q in range(1, 6)}
            for m, s, d, v in [
                ("dense", 0.0, "seed_floor", 0.06),
                ("wanda", 0.3, "paired_init", 0.9),
                ("wanda", 0.3, "cross_seed", 0.05),
            ]
        ]
    )
    styles = {
        line.get_label(): line.get_linestyle()
        for line in quintile_lines(table3, 0.7).axes[0].get_lines()
    }
    assert styles == {
        "dense seed_floor": ":",
        "wanda 0.3 paired_init": "-",
        "wanda 0.3 cross_seed": "--",
    }
    long = table3.melt(
        id_vars=["model", "layer", "method", "sparsity", "definition"],
        value_vars=[f"Q{q}" for q in range(1, 6)],
        var_name="quintile",
        value_name="survival",
    ).assign(tau=0.7, quintile=lambda f: f["quintile"].str[1].astype(int))
    fig = quintile_by_method(long, 0.7)
    assert [ax.get_title() for ax in fig.axes] == ["paired_init", "cross_seed"]
    for ax in fig.axes:
        floor = [line for line in ax.get_lines() if line.get_label() == "seed floor"]
        assert len(floor) == 1 and list(floor[0].get_ydata()) == [0.06] * 5


def test_figure_3_tells_the_trained_and_the_pretrained_sae_apart():
    rows = [
        {"model": "tiny", "layer": 1, "sae_kind": kind, "method": method, "sparsity": s}
        | {"fvu": base + s}
        for kind, base in (("trained", 0.1), ("pretrained", 0.3))
        for method, s in (("dense", 0.0), ("wanda", 0.3), ("wanda", 0.5))
    ]
    fig = line_by_sparsity(pd.DataFrame(rows), "fvu", None, "FVU", "RQ3", True, style="sae_kind")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    drawn = dict(zip(labels, handles, strict=True))
    assert set(labels) == {"wanda trained", "wanda pretrained"}
    assert drawn["wanda trained"][0].get_linestyle() == "-"
    assert drawn["wanda pretrained"][0].get_linestyle() == "--"
    assert list(drawn["wanda pretrained"][0].get_ydata()) == pytest.approx([0.3, 0.6, 0.8])
    figure_3 = transfer_lines(pd.DataFrame(rows))
    assert figure_3.axes[0].get_ylabel() == "FVU on the condition's activations"
    assert figure_3.get_suptitle() == "RQ3 transfer"
    assert figure_3.axes[0].get_legend_handles_labels()[1] == labels


def test_each_sae_of_the_quintile_figure_gets_its_own_panel():
    from prunescope.figures import quintile_lines

    label = "google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz"
    table3 = pd.DataFrame(
        [
            {"model": "tiny", "layer": 1, "sae": sae, "method": "wanda", "sparsity": 0.3}
            | {"definition": "activation"}
            | {f"Q{q}": v for q in range(1, 6)}
            for sae, v in (("trained here", 0.9), (label, 0.4))
        ]
    )
    fig = quintile_lines(table3, 0.7)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "tiny L1\ntrained here"
    assert titles[1].startswith("tiny L1\n…") and titles[1].endswith("average_l0_82/params.npz")
    assert [list(ax.get_lines()[0].get_ydata()) for ax in fig.axes[:2]] == [[0.9] * 5, [0.4] * 5]
    single = quintile_lines(table3[table3["sae"] == "trained here"], 0.7)
    assert [ax.get_title() for ax in single.axes if ax.get_title()] == ["tiny L1"]


def test_the_mnn_figures_draw_and_log_the_rows_at_their_threshold(tmp_path, caplog):
    import logging

    from prunescope.figures import seed_stability_lines, survival_lines

    rows = pd.concat([_survival_rows().assign(tau=0.7), _survival_rows().assign(tau=0.5)])
    with caplog.at_level(logging.INFO, logger="prunescope"):
        save_figure(survival_lines(rows, 0.7), tmp_path / "fig2.png")
    at_tau = rows[rows["tau"] == 0.7]
    assert [r.getMessage() for r in caplog.records] == [
        f"dense->pruned MNN at tau 0.70:\n{at_tau.to_string()}"
    ]
    # the same bytes as the figure of those rows alone, the arrow drawn as one
    direct = line_by_sparsity(
        at_tau,
        "mnn_mean",
        "mnn_std",
        "dense→pruned MNN at τ=0.7",
        "RQ2 feature survival",
        False,
        style="definition",
        floor="seed_floor_mnn",
    )
    save_figure(direct, tmp_path / "direct.png")
    for suffix in ("png", "pdf"):
        got = (tmp_path / f"fig2.{suffix}").read_bytes()
        assert got == (tmp_path / f"direct.{suffix}").read_bytes()
    stability = rows[rows["definition"] == "paired_init"].assign(method="dense", sparsity=0.0)
    fig = seed_stability_lines(pd.concat([stability.iloc[:1], rows]), 0.5)
    assert fig.axes[0].get_ylabel() == "seed-to-seed MNN at τ=0.5"
    assert fig.get_suptitle() == "RQ1 seed stability"
