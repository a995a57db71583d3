"""Study ALIGN: the MIP oracle's W1 at one sparsity, every neuron solved to optimality or to
the time or node limit (enumeration, branch and bound, or SCIP as ``align.mip.solver`` says)."""

from prunescope.align.experiment import save_mip_solution
from prunescope.align.mip import solutions_frame, solve_layer
from prunescope.align.net import load_nets
from prunescope.align.plan import STRUCTURES, keep_count
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads) as log:
    p = snakemake.params
    net = load_nets(snakemake.input[0]).variant(0)
    width = net["W1"].shape[1]
    mask, weights, solutions = solve_layer(
        net["W1"],
        net["C0"],
        keep_count(width, p.sparsity),
        STRUCTURES[p.structure],
        time_limit=p.mip["time_limit"],
        node_limit=p.mip["node_limit"],
        gap=p.mip["gap"],
        enumerate_limit=p.mip["enumerate_limit"],
        solver=p.mip["solver"],
        threads=snakemake.threads,
    )
    frame = solutions_frame(solutions)
    w = snakemake.wildcards
    save_mip_solution(
        snakemake.output[0],
        mask,
        weights,
        frame,
        task=w.task,
        structure=p.structure,
        trial=int(w.trial),
        sparsity=p.sparsity,
    )
    proven = frame["status"].isin(["optimal", "enumerated"]).sum()
    log.info(
        "%d of %d neurons proven optimal; max gap %.2e; %.1f s in all",
        proven,
        len(frame),
        frame["gap"].max(),
        frame["seconds"].sum(),
    )
