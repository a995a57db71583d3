"""Study ALIGN: one trial's dataset (a fresh read-once 4-DNF, or the fixed Digits split)."""

from prunescope.align.data import digits_dataset, sample_dnf_dataset, save_dataset
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    options = dict(snakemake.params.options)
    if options.pop("kind") == "dnf":
        data = sample_dnf_dataset(
            options["literals"],
            options["n_train"],
            options["n_test"],
            active_value=options["active_value"],
            seed=options["seed"],
        )
    else:
        data = digits_dataset(test_fraction=options["test_fraction"], seed=options["split_seed"])
    save_dataset(snakemake.output[0], data)
    log.info(
        "%d train / %d test samples, %d features, positive rate %.3f",
        len(data.y_train),
        len(data.y_test),
        data.x_train.shape[1],
        data.y_train.mean(),
    )
