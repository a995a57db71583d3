"""Study ALIGN: Hessian of the training loss with respect to W1 (OBD, OBS, FLO)."""

import numpy as np

from prunescope.align.data import load_dataset
from prunescope.align.hessian import hessian_sample, w1_hessian
from prunescope.align.net import load_nets
from prunescope.align.prune import damped_inverse
from prunescope.io import atomic_path
from prunescope.models import pick_device
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    p = snakemake.params
    data = load_dataset(snakemake.input.data)
    net = load_nets(snakemake.input.net).variant(0)
    rows = hessian_sample(len(data.x_train), p.fraction, p.seed)
    device = str(pick_device(p.device))
    hessian = w1_hessian(**net, x=data.x_train[rows], device=device)
    log.info("Hessian %s from %d samples on %s", hessian.shape, len(rows), device)
    inverse = damped_inverse(hessian, p.damping)
    for path, array in ((snakemake.output.hessian, hessian), (snakemake.output.inverse, inverse)):
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.save(stream, array)
