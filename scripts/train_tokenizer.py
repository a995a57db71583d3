"""Train the byte-level BPE tokenizer of a locally trained model."""

from prunescope.corpus import read_jsonl
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging
from prunescope.tinylm import train_bpe_tokenizer

with rule_logging(snakemake.log[0]) as log:
    spec = snakemake.params.tokenizer
    max_chars = spec.get("max_chars")

    def texts():
        used = 0
        for doc in read_jsonl(snakemake.input.train):
            if max_chars is not None and used >= max_chars:
                return
            used += len(doc.text)
            yield doc.text

    tokenizer = train_bpe_tokenizer(texts(), spec["vocab_size"])
    log.info("vocabulary: %d tokens", len(tokenizer))
    with atomic_path(snakemake.output[0]) as tmp:
        tokenizer.save_pretrained(tmp)
