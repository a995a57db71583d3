"""Model folders on disk: a frozen copy of a hub model and pruned checkpoints."""

from __future__ import annotations

from pathlib import Path

from prunescope.io import write_json
from prunescope.models import load_causal_lm


def save_pretrained_copy(
    name: str,
    out_dir: str | Path,
    *,
    revision: str | None = None,
    dtype: str = "float32",
    key: str | None = None,
) -> None:
    """Load ``name`` (a hub id or a model folder) and save model and tokenizer to ``out_dir``.

    Saving once pins the revision: every condition of the grid is pruned from
    the same weights even if the hub copy changes later. ``key`` is the config key
    that names the model (``models.<name>.name``); every refusal of ``load_causal_lm``
    (unreachable hub, incomplete or damaged weights or tokenizer) starts with it.
    """
    model, tokenizer = load_causal_lm(name, dtype, device="cpu", revision=revision, key=key)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_json(Path(out_dir) / "source.json", {"name": name, "revision": revision, "dtype": dtype})


def save_pruned(model, tokenizer, report: dict, out_dir: str | Path) -> None:
    """A pruned checkpoint is an ordinary HF folder plus ``pruning_report.json``."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_json(Path(out_dir) / "pruning_report.json", report)
