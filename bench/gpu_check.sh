#!/usr/bin/env bash
# The GPU check: every CUDA path once, and the papers' sizes timed, on one GPU.
#
#   bench/gpu_check.sh [OUT]        (run from the repository root; OUT: results/gpu_check)
#
# Sections, in order, each under its own time limit so one that hangs cannot eat the rest
# (durations measured on one H200 in brackets; README "On one GPU" has the results):
#   job_startup      what every GPU job pays before its work: imports, CUDA's start [13 s]
#   cuda_only_tests  the tests that need CUDA (each compares a CUDA result with the CPU's)
#   paper_scale      python -m bench --size full paper_scale: SAE step, matching, capture
#                    and pruning at the papers' sizes, with peak GPU memory (bench/
#                    paper_scale.py) [about 80 s without pruning; pruning over 4 min]
#   unit_tests       the unit tests of every module with a CUDA path [over 90 s on 8 workers]
#   tiny_benchmarks  the GPU cases of the other benchmarks at their tiny size [about 1 min]
#   smoke_table3     the smoke preset's results/tables/table3.csv with --resources gpu=1
#                    and device=cuda, in a copy (52 jobs; each GPU job about 17 s there)
#   smoke_rest       every other target of the smoke preset
# The whole script stops within GPU_CHECK_BUDGET_S seconds (default 3600): a section gets
# its own limit or what is left, whichever is less. GPU_CHECK_SECTIONS="a b" runs only
# those sections; PAPER_SCALE_CASES="sae,matching" only those paper-scale cases.
# GPU_CHECK_DEVICE=cpu rehearses the script on a machine without a GPU.
# Where python3 has no Snakemake (a bare GPU image), the wheels in .whl/ (snakemake,
# pyscipopt, the pinned transformers...) are installed first into a private folder.
# Every section's output goes to OUT/gpu_check.log; the last lines are a summary. The exit
# status is 1 when any section failed, ran out of time or was not run.
set -uo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/../results/gpu_check}")
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

site=$(mktemp -d /tmp/gpu-check-site.XXXX)
smoke=""
trap 'rm -rf "$site" ${smoke:+"$smoke"}' EXIT
if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import snakemake" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || exit 1
fi
export PYTHONPATH="$site:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

export TIMEFORMAT="  %R s"
deadline=$((SECONDS + ${GPU_CHECK_BUDGET_S:-3600}))
sections=()
declare -A status

wanted() { [[ -z ${GPU_CHECK_SECTIONS:-} || " $GPU_CHECK_SECTIONS " == *" $1 "* ]]; }

section() {  # section NAME LIMIT_S COMMAND...: run it under a time limit, record its status
    local name=$1 limit=$2
    shift 2
    wanted "$name" || return 0
    local left=$((deadline - SECONDS))
    ((left < limit)) && limit=$left
    sections+=("$name")
    if ((limit < 5)); then
        status[$name]="not run: the budget is spent"
        return
    fi
    echo
    echo "== $name (limit ${limit} s, started $(date +%T))"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    status[$name]="exit $rc after $((SECONDS - started)) s"
    echo "== $name: ${status[$name]}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
python3 -c "import sys, torch, transformers, snakemake, numpy, pandas, scipy, h5py, statsmodels
print('python', sys.version.split()[0], 'cuda', torch.cuda.is_available())
for module in (torch, transformers, snakemake, numpy, pandas, scipy, h5py, statsmodels):
    print(module.__name__, module.__version__)"

# What every GPU job pays before its work: the imports and CUDA's start.
startup() {
    for code in "import torch" "import torch; torch.zeros(1, device='cuda')" \
        "import torch, transformers, prunescope.pruning; torch.zeros(1, device='cuda')"; do
        echo "$code"
        time python3 -c "$code"
    done
}
export -f startup
section job_startup 60 bash -c startup
section cuda_only_tests 120 python3 -m pytest -q -p no:cacheprovider -rs \
    tests/test_matching.py::test_cuda_matches_cpu \
    tests/test_align_hessian.py::test_w1_hessian_on_cuda_matches_cpu
section paper_scale 900 python3 -m bench --size full paper_scale --out "$out"

workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n $(($(nproc) / 2))")
# shellcheck disable=SC2086  # $workers is empty or two words
section unit_tests 600 python3 -m pytest -q -p no:cacheprovider $workers \
    -m "not slow and not workflow and not slurm and not browser" \
    tests/test_matching.py tests/test_align_hessian.py tests/test_sae.py tests/test_pruning.py \
    tests/test_activations.py tests/test_gpus.py tests/test_feature_pruning.py \
    tests/test_models.py tests/test_transfer.py tests/test_ablation.py tests/test_bench.py \
    --deselect "tests/test_bench.py::test_benchmark_runs_tiny[mip]"  # needs cvxpy

section tiny_benchmarks 300 python3 -m bench --size tiny sae_step capture matching pruning \
    --out "$out/tiny"

if wanted smoke_table3 || wanted smoke_rest; then
    smoke=$(mktemp -d /tmp/gpu-check-smoke.XXXX)
    if git rev-parse --git-dir >/dev/null 2>&1; then  # the tracked tree, nothing built
        git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -
    else
        tar --exclude=./.git --exclude=./.whl --exclude=./.venv --exclude=./results -cf - .
    fi | tar -xf - -C "$smoke"
    # Snakemake's --configfile and --config take every word after them: targets come first.
    snakemake_options=(
        --directory "$smoke" --snakefile "$smoke/Snakefile" --cores "$(nproc)" --resources gpu=1
        --configfile "$smoke/configs/smoke.yaml" --config device="${GPU_CHECK_DEVICE:-cuda}"
    )
    section smoke_table3 1800 python3 -m snakemake results/tables/table3.csv "${snakemake_options[@]}"
    section smoke_rest 3600 python3 -m snakemake "${snakemake_options[@]}"
    tar -czf "$out/smoke_tables.tar.gz" --ignore-failed-read -C "$smoke" results/tables \
        results/align/tables
fi

echo
echo "== summary"
failed=0
for name in ${sections[@]+"${sections[@]}"}; do
    printf '%-16s %s\n' "$name" "${status[$name]}"
    [[ ${status[$name]} == "exit 0 "* ]] || failed=$((failed + 1))
done
if [[ -f $out/paper_scale.json ]]; then
    python3 - "$out/paper_scale.json" <<'EOF'
import json, sys
for case in json.load(open(sys.argv[1]))["cases"]:
    print(json.dumps({k: v for k, v in case.items() if not isinstance(v, (list, dict))}))
EOF
fi
exit $((failed > 0))
