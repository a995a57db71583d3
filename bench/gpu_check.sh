#!/usr/bin/env bash
# The GPU check: every CUDA path once, and the papers' sizes timed, on one GPU.
#
#   bench/gpu_check.sh [OUT]        (run from the repository root; OUT: results/gpu_check)
#
# Sections, each with its own time limit so one that hangs cannot eat the others':
#   1. python -m bench --size full paper_scale: SAE step, capture, matching and pruning at
#      the papers' sizes, with peak GPU memory (bench/paper_scale.py);
#   2. the CUDA-only tests, then the unit tests of every module with a CUDA path;
#   3. the GPU cases of the other benchmarks, at their tiny size;
#   4. the smoke workflow with --resources gpu=1 and device=cuda, in a copy: first
#      results/tables/table3.csv (the LM chain: train, prune, capture, SAEs, matching),
#      then every other target of the preset in the time left.
# The whole script stops within GPU_CHECK_BUDGET_S seconds (default 480): a section gets
# its own limit or what is left, whichever is less. GPU_CHECK_DEVICE=cpu rehearses the
# script on a machine without a GPU; GPU_CHECK_SECTIONS="a b" runs only those sections.
# Wheels in .whl/ (for packages the machine lacks: snakemake, pyscipopt, the pinned
# transformers) are installed first into a private folder, never into the system.
# Every section's output goes to OUT/gpu_check.log; the last lines are a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-results/gpu_check}")
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

site=$(mktemp -d /tmp/gpu-check-site.XXXX)
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || exit 1
fi
export PYTHONPATH="$site:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

export TIMEFORMAT="  %R s"
deadline=$((SECONDS + ${GPU_CHECK_BUDGET_S:-480}))
sections=()
declare -A status

section() {  # section NAME LIMIT_S COMMAND...: run it under a time limit, record its status
    local name=$1 limit=$2
    shift 2
    if [[ -n ${GPU_CHECK_SECTIONS:-} && " $GPU_CHECK_SECTIONS " != *" $name "* ]]; then
        return
    fi
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
section paper_scale 260 python3 -m bench --size full paper_scale --out "$out"

workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n $(($(nproc) / 2))")
# shellcheck disable=SC2086  # $workers is empty or two words
section cuda_tests 90 python3 -m pytest -q -p no:cacheprovider $workers \
    -m "not slow and not workflow and not slurm and not browser" \
    tests/test_matching.py tests/test_align_hessian.py tests/test_sae.py tests/test_pruning.py \
    tests/test_activations.py tests/test_gpus.py tests/test_feature_pruning.py \
    tests/test_models.py tests/test_transfer.py tests/test_ablation.py tests/test_bench.py \
    --deselect "tests/test_bench.py::test_benchmark_runs_tiny[mip]"  # needs cvxpy

section tiny_benchmarks 45 python3 -m bench --size tiny sae_step capture matching pruning \
    --out "$out/tiny"


smoke=$(mktemp -d /tmp/gpu-check-smoke.XXXX)
tar --exclude=./.whl --exclude=./results --exclude=./.git -cf - . | tar -xf - -C "$smoke"
# Snakemake's --configfile and --config take every word after them: targets come first.
snakemake_options=(
    --directory "$smoke" --snakefile "$smoke/Snakefile" --cores "$(nproc)" --resources gpu=1
    --configfile "$smoke/configs/smoke.yaml" --config device="${GPU_CHECK_DEVICE:-cuda}"
)
section smoke_table3 240 python3 -m snakemake results/tables/table3.csv "${snakemake_options[@]}"
section smoke_rest 600 python3 -m snakemake "${snakemake_options[@]}"
tar -czf "$out/smoke_tables.tar.gz" --ignore-failed-read -C "$smoke" results/tables results/align/tables

echo
echo "== summary"
for name in "${sections[@]}"; do
    printf '%-16s %s\n' "$name" "${status[$name]}"
done
python3 - "$out/paper_scale.json" <<'EOF' || true
import json, sys
for case in json.load(open(sys.argv[1]))["cases"]:
    print(json.dumps({k: v for k, v in case.items() if not isinstance(v, (list, dict))}))
EOF
