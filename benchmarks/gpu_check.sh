#!/usr/bin/env bash
# The GPU check of issue #17, one script for a lent GPU machine (no package registry there):
#   bash benchmarks/gpu_check.sh                # every GPU path; report appended to benchmarks/RESULTS.md
#   bash benchmarks/gpu_check.sh --cpu-smoke    # the same code paths on CPU with tiny sizes (about a minute)
# Steps (benchmarks/gpu_check.py): environment; torchrun equality of `nni-ext ofa3 tables` (byte-identical
# files?) and `nni-ext ofa finetune --sync-bn` (NCCL on CUDA, gloo on CPU); the GPU configs (NNI schema, a
# short nnictl run of configs/ofa2_eval_gpu.yml with one GPU per trial, nvidia-smi polled); bench_amp.py
# (SPOS step throughput fp32 vs AMP vs AMP + channels-last at batch 256 and 512).
# Environment: GPU_CHECK_RESULTS (report file, default benchmarks/RESULTS.md), GPU_CHECK_WORK (scratch folder,
# default a new temporary one), GPU_CHECK_SKIP (torchrun,configs,amp), GPU_CHECK_AMP_BATCHES (256,512);
# with $OUT set (the device runner's output folder) the report is also copied there.
set -u
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python}
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = ["torch", "numpy", "yaml", "nni", "pymoo", "ofa", "nni_ext", "pandas", "torchvision"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PYEOF
) || { echo "gpu_check: cannot run $PY; activate the project's .venv first" >&2; exit 2; }
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python packages: $missing (install with pip install -e '.[test]' where a registry is reachable)" >&2
  exit 2
fi
work=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
results=${GPU_CHECK_RESULTS:-benchmarks/RESULTS.md}
"$PY" benchmarks/gpu_check.py --work "$work" --results "$results" --skip "${GPU_CHECK_SKIP:-}" \
  --amp-batches "${GPU_CHECK_AMP_BATCHES:-256,512}" "$@"
rc=$?
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then
  cp "$results" "$OUT/gpu_check_results.md" 2>/dev/null || true
fi
exit $rc
