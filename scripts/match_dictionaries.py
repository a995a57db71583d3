"""Match the decoder dictionaries of two SAEs (per-feature partners, MNN, greedy 1-to-1)."""

from pathlib import Path

from prunescope.match_files import save_matches
from prunescope.matching import decoder_in_space, match_dictionaries
from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.sae import load_sae

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    w, p = snakemake.wildcards, snakemake.params
    # load_sae checks each file (and that cfg.json beside it fits) before any matching starts
    sae_a, sae_b = (load_sae(Path(path).parent) for path in (snakemake.input.a, snakemake.input.b))
    dec_a = decoder_in_space(sae_a.W_dec.detach(), sae_a.std, p.space)
    dec_b = decoder_in_space(sae_b.W_dec.detach(), sae_b.std, p.space)
    result = match_dictionaries(
        dec_a, dec_b, p.taus, block_rows=p.block_rows, device=pick_device(p.device)
    )
    attrs = {
        "model": w.model,
        "layer": int(w.layer),
        "cond_a": w.cond_a,
        "seed_a": int(w.seed_a),
        "cond_b": w.cond_b,
        "seed_b": int(w.seed_b),
        "match_space": p.space,
    }
    save_matches(result, snakemake.output[0], attrs)
    for row in result.rates():
        log.info(
            "tau %.2f: one-way %.4f  MNN %.4f  greedy %.4f",
            *(row[k] for k in ("tau", "one_way", "mnn", "greedy")),
        )
