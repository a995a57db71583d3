"""Split a corpus into train / calibration / eval documents (JSON lines)."""

from prunescope.corpus import (
    documents_from_config,
    require_documents,
    split_documents,
    write_jsonl,
)
from prunescope.io import write_json
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    spec = snakemake.params.corpus
    key = f"corpora.{snakemake.wildcards.corpus}"
    docs = documents_from_config(spec["source"], spec, key)
    splits = split_documents(
        docs, spec["fractions"], spec["seed"], shuffle=spec["shuffle"], max_chars=spec["max_chars"]
    )
    require_documents(splits, spec["fractions"], key)
    manifest = {"corpus": snakemake.wildcards.corpus, "source": spec["source"], "splits": {}}
    for name, split_docs in splits.items():
        n = write_jsonl(split_docs, snakemake.output[name])
        chars = sum(len(d.text) for d in split_docs)
        manifest["splits"][name] = {"documents": n, "characters": chars}
        log.info("%s: %d documents, %d characters", name, n, chars)
    write_json(snakemake.output.manifest, manifest)
