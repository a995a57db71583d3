"""Saved figures are reproducible: the same figure gives the same bytes, PNG and PDF."""

from __future__ import annotations

import struct

import pandas as pd
import pytest

from prunescope.figures import line_by_sparsity, save_figure


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
