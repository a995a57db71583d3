"""Perplexity of one condition on the held-out split, same windows for every condition."""

from prunescope.corpus import read_jsonl, token_stream
from prunescope.io import write_json
from prunescope.models import load_causal_lm
from prunescope.perplexity import perplexity
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    p = snakemake.params
    cfg = p.perplexity
    model, tokenizer = load_causal_lm(snakemake.input.model, p.dtype, p.device)
    ids = token_stream(tokenizer, read_jsonl(snakemake.input.text), max_tokens=cfg["max_tokens"])
    result = perplexity(
        model,
        ids,
        window=cfg["window"],
        stride=cfg["stride"],
        bos_id=tokenizer.bos_token_id,
        batch_size=cfg["batch_size"],
    )
    result.update(model=snakemake.wildcards.model, condition=snakemake.wildcards.cond)
    log.info("perplexity %.3f over %d tokens", result["perplexity"], result["n_tokens_scored"])
    write_json(snakemake.output[0], result)
