"""Train the tiny Llama-architecture LM and save it as a Hugging Face folder."""

from transformers import AutoTokenizer

from prunescope.corpus import windows_from_jsonl
from prunescope.io import atomic_path, write_json
from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.tinylm import TrainingConfig, build_llama, train_lm

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    tokenizer = AutoTokenizer.from_pretrained(snakemake.input.tokenizer)
    training = dict(snakemake.params.training)
    context = training.pop("context")
    train_tokens = training.pop("train_tokens")
    eval_tokens = training.pop("eval_tokens")
    cfg = TrainingConfig(**training)
    train = windows_from_jsonl(tokenizer, snakemake.input.train, context, train_tokens)
    held_out = windows_from_jsonl(tokenizer, snakemake.input.eval, context, eval_tokens)
    log.info("training windows %s, eval windows %s", tuple(train.shape), tuple(held_out.shape))
    model = build_llama(tokenizer, snakemake.params.architecture, seed=cfg.seed)
    report = train_lm(model, train, held_out, cfg, pick_device(snakemake.params.device))
    log.info("eval loss %.4f, perplexity %.2f", report["eval_loss"], report["eval_perplexity"])
    with atomic_path(snakemake.output[0]) as tmp:
        model.to("cpu").save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "training_report.json", report)
