"""Model folders on disk: a frozen copy of a hub model and pruned checkpoints."""

from __future__ import annotations

from pathlib import Path

from prunescope.io import write_json
from prunescope.models import DTYPES, check_dtype_for_model


def save_pretrained_copy(
    name: str, out_dir: str | Path, *, revision: str | None = None, dtype: str = "float32"
) -> None:
    """Load ``name`` with ``from_pretrained`` and save model and tokenizer to ``out_dir``.

    Saving once pins the revision: every condition of the grid is pruned from
    the same weights even if the hub copy changes later.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(name, revision=revision)
    check_dtype_for_model(config.model_type, dtype)
    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_json(Path(out_dir) / "source.json", {"name": name, "revision": revision, "dtype": dtype})


def save_pruned(model, tokenizer, report: dict, out_dir: str | Path) -> None:
    """A pruned checkpoint is an ordinary HF folder plus ``pruning_report.json``."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_json(Path(out_dir) / "pruning_report.json", report)
