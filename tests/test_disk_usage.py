"""Disk use of a run over time (bench.disk_usage): peak, keep-everything peak, kinds."""

from __future__ import annotations

import json
import sys
import textwrap

from bench.disk_usage import DiskTrace, kind_of, main, snapshot


def test_each_large_intermediate_has_its_kind():
    assert kind_of("activations/tiny/dense/L1.h5") == "activation caches"
    assert kind_of("activations/tiny/dense/L1.h5.partial") == "activation caches"
    assert kind_of("models/tiny/wanda-0.4/model.safetensors") == "pruned LM checkpoints"
    assert kind_of("align/nets/dnf16/trial0/hessian_inverse.npy") == "Study ALIGN Hessians"
    assert kind_of("align/nets/dnf16/trial0/dense.safetensors") == "Study ALIGN nets"
    assert kind_of("tables/table3.csv") == "everything else"


def test_trace_keeps_the_largest_total_and_each_file_at_its_largest():
    trace = DiskTrace()
    trace.add({"activations/a.h5.partial": 40})
    trace.add({"activations/a.h5": 100, "sae/s/sae.safetensors.partial": 5})
    trace.add({"activations/a.h5": 100, "sae/s/sae.safetensors": 30})
    trace.add({"sae/s/sae.safetensors": 30, "tables/t.csv": 1})  # the cache was deleted
    summary = trace.summary()
    assert summary["peak_bytes"] == 130
    assert summary["end_bytes"] == 31
    # .partial files are the same bytes as the file they become: counted once
    assert summary["keep_everything_bytes"] == 131
    assert summary["keep_everything_by_kind_bytes"] == {
        "activation caches": 100,
        "SAEs": 30,
        "everything else": 1,
    }
    assert summary["end_by_kind_bytes"] == {"SAEs": 30, "everything else": 1}


def test_snapshot_lists_nested_files_relative_to_the_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.bin").write_bytes(b"12345")
    (tmp_path / "y.txt").write_bytes(b"1")
    assert snapshot(tmp_path) == {"a/b/x.bin": 5, "y.txt": 1}
    assert snapshot(tmp_path / "missing") == {}


def test_a_traced_run_sees_a_file_it_deleted_and_passes_on_the_exit_code(tmp_path, capsys):
    # writes a 200 kB intermediate, keeps it 2 s (40 samples), deletes it and leaves 10 kB behind
    script = textwrap.dedent(
        """
        import pathlib, sys, time
        folder = pathlib.Path(sys.argv[1])
        folder.mkdir()
        (folder / "activations").mkdir()
        (folder / "activations" / "L1.h5").write_bytes(b"x" * 200_000)
        time.sleep(2.0)
        (folder / "activations" / "L1.h5").unlink()
        (folder / "table.csv").write_bytes(b"y" * 10_000)
        sys.exit(3)
        """
    )
    folder, out = tmp_path / "results", tmp_path / "disk.json"
    command = [sys.executable, "-c", script, str(folder)]
    args = ["--folder", str(folder), "--every", "0.05", "--out", str(out), "--", *command]
    assert main(args) == 3
    summary = json.loads(out.read_text())
    assert summary["peak_bytes"] == 200_000
    assert summary["end_bytes"] == 10_000
    assert summary["keep_everything_bytes"] == 210_000
    assert summary["keep_everything_by_kind_bytes"]["activation caches"] == 200_000
    assert "peak 0.00 GB" in capsys.readouterr().out
