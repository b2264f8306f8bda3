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
# with $OUT set (the device runner's output folder) the report is also written there as it grows.
# On the lent machine (Python with torch, no nni/pymoo/ofa, no registry) build the kit here first:
#   bash benchmarks/gpu_kit.sh      then   run(command="bash benchmarks/gpu_check.sh", carry=[".gpukit"])
set -u
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-$(command -v python || command -v python3)}
missing() {
  "$PY" - <<'PYEOF'
import importlib.util
need = ["torch", "torchvision", "numpy", "yaml", "pandas", "nni", "pymoo", "ofa", "nni_ext"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PYEOF
}
# the lent machine: no .venv, nni_ext from this checkout, nni/pymoo/ofa from the kit (benchmarks/gpu_kit.sh)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
absent=$(missing) || { echo "gpu_check: cannot run $PY; activate the project's .venv first" >&2; exit 2; }
if [ -n "$absent" ] && [ -d .gpukit ]; then
  site=${GPU_CHECK_SITE:-/tmp/site}
  echo "gpu_check: installing .gpukit into $site (missing: $absent)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .gpukit/*.whl \
    || echo "gpu_check: pip could not install every wheel of .gpukit" >&2
  if [ -f .gpukit/nni-3.0.tar.xz ]; then tar -C "$site" -xJf .gpukit/nni-3.0.tar.xz; fi
  mkdir -p "$site/bin"
  printf '#!/bin/sh\nexec "%s" -c "import sys; from nni.tools.nnictl.nnictl import parse_args; sys.exit(parse_args())" "$@"\n' \
    "$PY" > "$site/bin/nnictl"
  chmod +x "$site/bin/nnictl"
  export PYTHONPATH="$site:$PYTHONPATH" PATH="$site/bin:$PATH"
  absent=$(missing)
fi
case " $absent " in
  *" torch "*|*" numpy "*|*" yaml "*|*" nni_ext "*)
    echo "gpu_check: missing Python packages: $absent (pip install -e '.[test]', or build the kit here with" \
         "bash benchmarks/gpu_kit.sh and carry .gpukit)" >&2
    exit 2 ;;
esac
[ -z "$absent" ] || echo "gpu_check: missing $absent: the steps that need them are skipped (bash benchmarks/gpu_kit.sh)"
work=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
results=${GPU_CHECK_RESULTS:-benchmarks/RESULTS.md}
"$PY" benchmarks/gpu_check.py --work "$work" --results "$results" --skip "${GPU_CHECK_SKIP:-}" \
  --amp-batches "${GPU_CHECK_AMP_BATCHES:-256,512}" "$@"
exit $?
