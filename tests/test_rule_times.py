"""Per-rule time breakdown of Snakemake benchmark files (bench.rule_times)."""

from __future__ import annotations

import pytest

from bench.rule_times import main, parse_benchmark_tsv, read_benchmarks, rule_totals

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def benchmark_tsv(*runs: tuple[float, str]) -> str:
    """A Snakemake benchmark file with one row per (seconds, max_rss) run."""
    rows = [f"{s:.2f}\t0:00:00\t{rss}\t1.0\t1.0\t1.0\t0.0\t0.0\t90.0\t1.0\n" for s, rss in runs]
    return HEADER + "".join(rows)


@pytest.fixture
def benchmarks(tmp_path):
    """train: 2 jobs (30 s + 10 s), match: 3 jobs in nested folders (one NA max_rss, one
    file holding two repeats), table: 1 job written directly in the folder. 100 s in all."""
    files = {
        "train/tiny/seed0.tsv": benchmark_tsv((30.0, "700.5")),
        "train/tiny/seed1.tsv": benchmark_tsv((10.0, "650.0")),
        "match/tiny/L2/a__b.tsv": benchmark_tsv((5.0, "NA")),
        "match/tiny/L2/c__d.tsv": benchmark_tsv((20.0, "250.0"), (25.0, "260.0")),
        "table.tsv": benchmark_tsv((10.0, "90.0")),
        "match/tiny/notes.txt": "not a benchmark",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_rows_are_grouped_by_the_first_folder(benchmarks):
    rows = read_benchmarks(benchmarks)
    assert sorted(rows) == sorted(
        [
            ("train", 30.0, 700.5),
            ("train", 10.0, 650.0),
            ("match", 5.0, None),
            ("match", 20.0, 250.0),
            ("match", 25.0, 260.0),
            ("table", 10.0, 90.0),
        ]
    )


def test_totals_shares_and_peaks_match_the_hand_counts(benchmarks):
    totals = rule_totals(read_benchmarks(benchmarks))
    assert [row["rule"] for row in totals] == ["match", "train", "table"]
    match, train, table = totals
    assert match == {
        "rule": "match",
        "jobs": 3,
        "total_s": pytest.approx(50.0),
        "mean_s": pytest.approx(50.0 / 3),
        "max_s": 25.0,
        "share": pytest.approx(0.5),
        "peak_max_rss_mb": 260.0,
    }
    assert (train["jobs"], train["total_s"], train["max_s"]) == (2, 40.0, 30.0)
    assert train["share"] == pytest.approx(0.4) and train["peak_max_rss_mb"] == 700.5
    assert table["mean_s"] == 10.0 and table["share"] == pytest.approx(0.1)
    assert sum(row["share"] for row in totals) == pytest.approx(1.0)


def test_a_rule_without_any_memory_reading_has_no_peak():
    (only,) = rule_totals([("short", 0.5, None), ("short", 0.25, None)])
    assert only["peak_max_rss_mb"] is None and only["total_s"] == 0.75


def test_no_rows_give_no_rules():
    assert rule_totals([]) == []


def test_a_file_that_is_not_a_benchmark_is_named():
    with pytest.raises(ValueError, match="odd.tsv has no 's' column"):
        parse_benchmark_tsv("seconds\tmax_rss\n1\t2\n", name="odd.tsv")
    with pytest.raises(ValueError, match="odd.tsv, line 2"):
        parse_benchmark_tsv(HEADER + "soon\t0:00:00\t1\n", name="odd.tsv")


def test_command_prints_the_top_rules(benchmarks, capsys):
    assert main([str(benchmarks), "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["rule", "jobs", "total", "s"]
    assert out[1].split()[:6] == ["match", "3", "50.0", "16.7", "25.0", "50.0%"]
    assert out[1].endswith("260 MB")
    assert out[2].split()[0] == "train"
    assert out[-1] == "6 jobs, 100 job-seconds in 3 rules (2 shown)"


def test_command_refuses_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    assert "does not exist" in capsys.readouterr().err
