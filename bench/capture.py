"""Activation capture: tokens/s of the whole capture against the bare forward pass.

The capture is ``prunescope.activations.capture_activations`` as the capture rule calls
it: forward to the cached layer (the residual hook stops the model there), finite check,
float64 stats, HDF5 write. It runs on the default config's model shape, randomly
initialised, at the rule's batch size, context and layer, on a quarter of the rule's
windows with ``stats_samples`` scaled alike, so stats cover the same share of the rows.
The reference is the same forward with nothing kept: the residual hook stopping the model
at the cached layer, which is all a capture must compute; the full forward (every block
and the LM head) is timed too, for scale. On CPU this small model's forward is cheap next
to the writes, so it is the hardest case for the target.

The write pattern and chunk shape come from the write-path cases: what a capture does
after each forward (finite check, copy, stats on the same share of rows, write) on the
same batches of activations, per chunk size and pattern, against their forward's time.
The read cases (:mod:`bench.cache_reads`) time the SAE trainer's pattern: chunk-aligned
contiguous blocks of the train rows in a random order
(``prunescope.sae.iter_shuffled_batches``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from bench.cache_reads import sae_reads
from bench.harness import (
    TINY_ARCHITECTURE,
    default_config,
    interleaved_medians,
    random_llama,
    target,
    tiny_model_shape,
)
from prunescope.activations import (
    DEFAULT_CHUNK_ROWS,
    ChunkWriter,
    RunningMoments,
    all_finite,
    capture_activations,
)
from prunescope.models import residual_hook

TARGET_RATIO = 0.8
WINDOW_SHARE = 4
"""The full size captures 1/4 of the default config's windows (a whole capture per repeat
would take minutes); ``stats_samples`` shrinks alike."""
TINY = {
    "architecture": TINY_ARCHITECTURE,
    "vocab_size": 256,
    "layer": 1,
    "context": 16,
    "batch_size": 8,
    "train_windows": 32,
    "eval_windows": 8,
    "stats_samples": 100,
    "skip_positions": 1,
}
LARGER_ARCHITECTURE = {
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}
"""A 4x wider model, for how the write share shrinks as the forward grows."""


def default_setting() -> dict:
    """The default config's model shape and capture settings, at 1/``WINDOW_SHARE`` scale."""
    config = default_config()
    capture = config["activations"]
    context = capture["context"]
    return {
        **tiny_model_shape(config),
        "layer": config["models"]["tiny"]["layers"][0],
        "context": context,
        "batch_size": capture["batch_size"],
        "train_windows": capture["train_tokens"] // context // WINDOW_SHARE,
        "eval_windows": capture["eval_tokens"] // context // WINDOW_SHARE,
        "stats_samples": capture["stats_samples"] // WINDOW_SHARE,
        "skip_positions": 1 if capture["skip_bos"] else 0,
    }


def build_model(setting: dict, device: torch.device) -> torch.nn.Module:
    return random_llama(setting["vocab_size"], setting["architecture"], device)


def token_windows(setting: dict) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shape = {name: (setting[f"{name}_windows"], setting["context"]) for name in ("train", "eval")}
    return {
        name: torch.randint(0, setting["vocab_size"], size, generator=generator)
        for name, size in shape.items()
    }


def batches_of(splits: dict[str, torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    return [
        windows[start : start + batch_size]
        for windows in splits.values()
        for start in range(0, len(windows), batch_size)
    ]


def forward_to_layer(model, layer: int, batches: list[torch.Tensor], device) -> list:
    """The capture's forward with nothing kept but the block outputs it returns."""
    with residual_hook(model, layer, stop_early=True) as capture, torch.inference_mode():
        return [capture.run(batch.to(device)) for batch in batches]


def full_forward(model, batches: list[torch.Tensor], device) -> None:
    with torch.inference_mode():
        for batch in batches:
            model(input_ids=batch.to(device), use_cache=False)


def capture_once(model, setting: dict, splits: dict[str, torch.Tensor], out: Path) -> None:
    """One capture as the capture rule runs it, with the setting's layer and batching."""
    capture_activations(
        model,
        setting["layer"],
        splits,
        out,
        provenance={"model": "random"},
        batch_size=setting["batch_size"],
        stats_samples=setting["stats_samples"],
        skip_positions=setting["skip_positions"],
    )


def end_to_end(setting: dict, device: torch.device, folder: Path, repeats: int, model=None) -> dict:
    """The capture against the forward it runs, and against the full forward, interleaved
    (on ``model`` if given, else a random Llama of the setting's shape)."""
    model = build_model(setting, device) if model is None else model
    splits = token_windows(setting)
    batches = batches_of(splits, setting["batch_size"])
    out = folder / "capture.h5"
    layer = setting["layer"]
    times = interleaved_medians(
        {
            "capture": lambda: capture_once(model, setting, splits, out),
            "forward_to_layer": lambda: forward_to_layer(model, layer, batches, device),
            "full_forward": lambda: full_forward(model, batches, device),
        },
        repeats,
    )
    tokens = sum(len(windows) for windows in splits.values()) * setting["context"]
    rows = tokens // setting["context"] * (setting["context"] - setting["skip_positions"])
    seconds = {name: times[name]["median_s"] for name in times}
    return {
        "device": str(device),
        "d_model": setting["architecture"]["hidden_size"],
        "n_layers": setting["architecture"]["num_hidden_layers"],
        "layer": layer,
        "batch_size": setting["batch_size"],
        "context": setting["context"],
        "tokens": tokens,
        "rows_stored": rows,
        "stats_samples": setting["stats_samples"],
        "chunk_rows": DEFAULT_CHUNK_ROWS,
        **{f"{name}_s": value for name, value in seconds.items()},
        **{f"{name}_tokens_per_s": tokens / value for name, value in seconds.items()},
        "ratio_vs_forward_to_layer": seconds["forward_to_layer"] / seconds["capture"],
        "ratio_vs_full_forward": seconds["full_forward"] / seconds["capture"],
        "samples_s": {name: times[name]["samples_s"] for name in times},
    }


# --------------------------------------------------------------------------- write path


def write_pattern(
    hidden: list[torch.Tensor], stats_rows: int, path: Path, chunk_rows: int, pattern: str
) -> Callable[[], None]:
    """What a capture does after each forward, with one chunk size and write pattern.

    ``per-batch``: one slice write per forward batch (``per-batch-isfinite`` also checks
    finiteness element-wise, as captures did before); ``buffer``: rows gather in a chunk
    buffer written with a slice write once full; ``direct``: ``ChunkWriter``, the same
    buffer written as a raw chunk (the library's pattern); ``lzf`` / ``gzip``: the buffer
    through a compressed dataset. ``cache64M`` is ``per-batch`` with a 64 MiB chunk cache.
    """
    d_model = hidden[0].shape[-1]
    n_rows = sum(h.shape[0] * h.shape[1] for h in hidden)
    compression = {"lzf": "lzf", "gzip": "gzip"}.get(pattern)
    cache = {"rdcc_nbytes": 64 << 20} if pattern == "cache64M" else {}

    def run() -> None:
        moments = RunningMoments(d_model)
        with h5py.File(path, "w", libver=("v110", "latest"), **cache) as f:
            dataset = f.create_dataset(
                "train",
                shape=(n_rows, d_model),
                dtype="float32",
                chunks=(min(chunk_rows, n_rows), d_model),
                compression=compression,
            )
            writer = ChunkWriter(dataset) if pattern == "direct" else SliceBuffer(dataset)
            row = 0
            for batch in hidden:
                finite = (
                    bool(torch.isfinite(batch).all())
                    if pattern == "per-batch-isfinite"
                    else all_finite(batch)
                )
                if not finite:
                    raise FloatingPointError("benchmark activations are not finite")
                block = batch.float().reshape(-1, d_model).cpu().numpy()
                if pattern in ("per-batch", "per-batch-isfinite", "cache64M"):
                    dataset[row : row + len(block)] = block
                else:
                    writer.append(block)
                if moments.count < stats_rows:
                    moments.update(block[: stats_rows - moments.count])
                row += len(block)
            if pattern not in ("per-batch", "per-batch-isfinite", "cache64M"):
                writer.close()

    return run


class SliceBuffer:
    """A chunk buffer flushed by ordinary slice writes (a variant, not the library's)."""

    def __init__(self, dataset: h5py.Dataset):
        self.dataset = dataset
        self.buffer = np.empty(dataset.chunks, dtype=np.float32)
        self.filled = 0
        self.start = 0

    def append(self, rows: np.ndarray) -> None:
        taken = 0
        while taken < len(rows):
            n = min(len(rows) - taken, len(self.buffer) - self.filled)
            self.buffer[self.filled : self.filled + n] = rows[taken : taken + n]
            self.filled, taken = self.filled + n, taken + n
            if self.filled == len(self.buffer):
                self.close()

    def close(self) -> None:
        if not self.filled:
            return
        self.dataset[self.start : self.start + self.filled] = self.buffer[: self.filled]
        self.start, self.filled = self.start + self.filled, 0


def write_paths(
    setting: dict, chunk_sizes: tuple[int, ...], folder: Path, repeats: int
) -> list[dict]:
    """Every write pattern and chunk size on the same activations, against their forward."""
    model = build_model(setting, torch.device("cpu"))
    splits = token_windows(setting)
    batches = batches_of({"train": splits["train"]}, setting["batch_size"])
    skip = setting["skip_positions"]
    layer = setting["layer"]
    hidden = [h[:, skip:] for h in forward_to_layer(model, layer, batches, "cpu")]
    n_rows = sum(h.shape[0] * h.shape[1] for h in hidden)
    stats_share = setting["stats_samples"] / (
        setting["train_windows"] * (setting["context"] - skip)
    )
    stats_rows = round(n_rows * min(1.0, stats_share))
    variants = [("per-batch-isfinite", DEFAULT_CHUNK_ROWS)]
    variants += [(pattern, chunk) for pattern in ("per-batch", "direct") for chunk in chunk_sizes]
    variants += [(pattern, DEFAULT_CHUNK_ROWS) for pattern in ("buffer", "cache64M", "lzf", "gzip")]
    fns = {"forward": lambda: forward_to_layer(model, layer, batches, "cpu")}
    for pattern, chunk in variants:
        fns[f"{pattern} {chunk}"] = write_pattern(
            hidden, stats_rows, folder / "w.h5", chunk, pattern
        )
    times = interleaved_medians(fns, repeats)
    forward = times["forward"]["median_s"]
    megabytes = n_rows * hidden[0].shape[-1] * 4 / 1e6
    cases = []
    for pattern, chunk in variants:
        seconds = times[f"{pattern} {chunk}"]["median_s"]
        cases.append(
            {
                "case": f"write path: {pattern}, {chunk} rows per chunk",
                "pattern": pattern,
                "chunk_rows": chunk,
                "d_model": hidden[0].shape[-1],
                "rows": n_rows,
                "stats_rows": stats_rows,
                "write_path_s": seconds,
                "forward_s": forward,
                "write_path_share_of_forward": seconds / forward,
                "implied_capture_ratio": forward / (forward + seconds),
                "write_path_mb_per_s": megabytes / seconds,
            }
        )
    return cases


# --------------------------------------------------------------------------- entry point


def run(size: str) -> dict:
    full = size == "full"
    setting = default_setting() if full else TINY
    repeats = 5 if full else 2
    cpu = torch.device("cpu")
    folder = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    try:
        main = end_to_end(setting, cpu, folder, repeats)
        cases = [{"case": "capture vs forward, default model shape, cpu", **main}]
        if full:
            larger = {**setting, "architecture": LARGER_ARCHITECTURE, "train_windows": 96}
            larger.update(eval_windows=32, stats_samples=2_000)
            cases.append(
                {
                    "case": "capture vs forward, d_model 512, cpu",
                    **end_to_end(larger, cpu, folder, repeats=3),
                }
            )
        chunk_sizes = (1024, 2048, 4096, 8192, 16384) if full else (16, 64)
        write_setting = (
            {**setting, "train_windows": 16 * setting["batch_size"]} if full else setting
        )
        cases += write_paths(write_setting, chunk_sizes, folder, repeats)
        read_chunks = (1024, 2048, 4096, 8192) if full else (16, 64)
        read_shapes = ((65_536, 128), (16_384, 2304)) if full else ((512, 32),)
        for n_rows, d_model in read_shapes:
            cases += sae_reads(n_rows, d_model, read_chunks, folder, repeats)
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            cases.append(
                {
                    "case": "capture vs forward, default model shape, cuda",
                    **end_to_end(setting, gpu, folder, repeats),
                }
            )
            if full:
                larger = {**setting, "architecture": LARGER_ARCHITECTURE}
                cases.append(
                    {
                        "case": "capture vs forward, d_model 512, cuda",
                        **end_to_end(larger, gpu, folder, repeats),
                    }
                )
        else:
            cases.append({"case": "capture on cuda", "skipped": "no CUDA device"})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    targets = [
        target(
            "capture tokens/s vs forward to the layer, default shape, CPU",
            main["ratio_vs_forward_to_layer"],
            TARGET_RATIO,
            ">=",
        )
    ]
    return {"cases": cases, "targets": targets, "gpu": torch.cuda.is_available()}
