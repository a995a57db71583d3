"""Per-neuron best-subset selection in feature space (paper section 3, appendix A.3 and A.9).

For one row ``w`` of ``W1`` and the shared PSD form ``Q = C0 @ C0.T`` we look for ``v`` with at
most ``keep`` non-zeros (and, under ``block=(n, m)``, at most ``n`` non-zeros in every block of
``m`` contiguous entries) minimising ``f(v) = (w - v)ᵀ Q (w - v) = ‖(w - v) C0‖²``.

Small instances are solved exactly by enumerating every maximal feasible support (on a fixed
support the best ``v`` is a least-squares refit, and a larger support never does worse). Larger
ones go to a branch and bound of our own over which entries to drop, warm-started with greedy
elimination and swap local search, with a kick-and-window local search between two rounds of it
when the first cannot finish. Its bound is combinatorial (a smaller support never fits better),
so it does not depend on the conditioning of Q. The convex relaxations of the mixed-integer
model do: on trained C0, whose λ_min(Q) is ~1e-5 of its mean diagonal, even the perspective
relaxation with the best diagonal bounds f by well under 1% of the optimum, which left SCIP's
dual bound at 0. SCIP takes a singular Q, which has no inverse to downdate, and every neuron
when asked for with ``solver="scip"`` (the paper's own stack).

Modules: :mod:`.supports` (feasible supports, refits, enumeration), :mod:`.heuristics` (greedy
and swap warm starts), :mod:`.search` (the branch and bound), :mod:`.improve` (the local search
between its rounds), :mod:`.scip` (SCIP's model) and :mod:`.solve` (one neuron, a whole
layer); the limits of a solve are a :class:`prunescope.settings.MipSettings`.
"""

from prunescope.align.mip.heuristics import greedy_backward
from prunescope.align.mip.improve import improve_support
from prunescope.align.mip.search import (
    SearchResult,
    branch_and_bound,
    drop_costs,
    lookahead_bounds,
)
from prunescope.align.mip.solve import NeuronSolution, solutions_frame, solve_layer, solve_neuron
from prunescope.align.mip.supports import (
    _ENUMERATION_BATCH as _ENUMERATION_BATCH,  # memory.sizes.ENUMERATION_BATCH must equal it
)
from prunescope.align.mip.supports import (
    Block,
    count_supports,
    enumerate_best_subset,
    feature_refit,
    is_feasible_support,
    max_support_size,
    refit_on_support,
)
from prunescope.settings import MipSettings

__all__ = [
    "Block",
    "MipSettings",
    "NeuronSolution",
    "SearchResult",
    "branch_and_bound",
    "count_supports",
    "drop_costs",
    "enumerate_best_subset",
    "feature_refit",
    "greedy_backward",
    "improve_support",
    "is_feasible_support",
    "lookahead_bounds",
    "max_support_size",
    "refit_on_support",
    "solutions_frame",
    "solve_layer",
    "solve_neuron",
]
