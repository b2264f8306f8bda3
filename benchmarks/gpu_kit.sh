#!/usr/bin/env bash
# Builds .gpukit/: the Python packages the lent GPU machine lacks, for benchmarks/gpu_check.sh to install there.
#   bash benchmarks/gpu_kit.sh                  # here, where pip reaches a package registry
# The lent machine (see the device tool's KINDS.md) has Python 3.12 with torch, torchvision, numpy, pandas, scipy,
# scikit-learn, matplotlib, PyYAML, tqdm, requests, psutil, but no nni, pymoo or ofa, and no registry. A call
# carries at most 64 MiB with the working tree, and nni's wheel alone is 61 MB (node.js and the web UI inside), so
# nni travels repacked as .tar.xz (about 41 MB); with the wheels below the kit is about 50 MB. Then, on the device:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpukit"], timeout_s=600)
# gpu_check.sh installs the kit into /tmp/site when a package is missing (pip --no-index --no-deps --target).
# GPU_KIT_PYTHON (default 3.12) is the device's Python version: the compiled wheels (pymoo, moocore, cffi) match it.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.gpukit
py=${GPU_KIT_PYTHON:-3.12}
mkdir -p "$kit"
# never committed: the kit is built per machine
grep -qx '/.gpukit/' .git/info/exclude 2>/dev/null || echo '/.gpukit/' >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    "${platforms[@]}" -d "$1" "${@:2}"
}
# pymoo and what it needs beyond the device's packages; ofa (pure Python); nni's own dependencies; setuptools<81
# for nnictl's pkg_resources. Versions: those this project's tests pass with.
download "$kit" pymoo==0.6.2 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9 autograd==1.9.1 \
  cma==4.5.0 alive-progress==3.3.0 about-time==4.2.1 graphemeu==0.7.2 Deprecated==1.3.1 \
  ofa==0.1.0.post202307202001 \
  astor==0.8.1 json-tricks==3.17.3 prettytable==3.18.0 wcwidth==0.9.4 PythonWebHDFS==0.2.3 schema==0.7.8 \
  typeguard==4.1.2 websockets==17.4 filelock==3.11.0 responses==0.26.3 "setuptools<81"
if [ ! -f "$kit/nni-3.0.tar.xz" ]; then
  tmp=$(mktemp -d)
  download "$tmp" nni==3.0
  mkdir "$tmp/site"
  python3 -m zipfile -e "$tmp"/nni-3.0-*.whl "$tmp/site"
  chmod +x "$tmp/site/nni_node/node"
  tar -C "$tmp/site" -cf - . | xz -T0 -6 > "$tmp/nni-3.0.tar.xz"
  mv "$tmp/nni-3.0.tar.xz" "$kit/nni-3.0.tar.xz"  # whole or not at all: an interrupted run leaves no stub
  rm -rf "$tmp"
fi
du -sh "$kit"
ls "$kit"
