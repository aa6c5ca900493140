#!/usr/bin/env bash
# Create .venv/ at the repository root with the pinned stack, unless it is already complete.
#
# mmcv 2.1.0 is published as source only. When ../shared/wheels holds a wheel built for exactly
# our torch, pip takes it from there (--find-links); otherwise mmcv is compiled here (12-17 min on
# 2 cores): without build isolation (so it sees our torch), with setuptools < 81 (its setup.py
# imports pkg_resources) and with -std=c++20 (torch 2.14's headers need it; mmcv asks for c++17).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$root/.venv}
py=$venv/bin/python
stamp=$venv/.mmxformer-installed
reqs=("$root/requirements/runtime.txt" "$root/requirements/tests.txt"
      "$root/requirements/lint.txt" "$root/requirements/deploy.txt" "$root/requirements/mmdeploy.txt" "$root/setup.py")

if [ -f "$stamp" ] && [ -z "$(find "${reqs[@]}" -newer "$stamp")" ]; then
    exit 0
fi

[ -x "$py" ] || python3.11 -m venv "$venv" || python3 -m venv "$venv"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" 'pip>=24' 'setuptools>=77,<81' wheel ninja psutil

wheels=$root/../shared/wheels
if [ -d "$wheels" ] && ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    echo "install_env: using the prebuilt mmcv wheel in $wheels"
    "${pip[@]}" --find-links "$wheels" -r "$root/requirements/runtime.txt"
else
    echo "install_env: no prebuilt mmcv wheel; compiling mmcv 2.1.0 from source (12-17 min)"
    "${pip[@]}" $(grep -v -E '^(#|mmcv|mmdet|mmsegmentation|mmpretrain)' "$root/requirements/runtime.txt")
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    # pip prepares the sdist's metadata, which runs its setup.py: in the venv, not in an
    # isolated build environment whose setuptools >= 81 lacks pkg_resources
    "$py" -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: mmcv==2.1.0 \
        -d "$src"
    tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
    sed -i 's/-std=c++17/-std=c++20/' "$src/mmcv-2.1.0/setup.py"
    (cd "$src/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        "${pip[@]}" --no-build-isolation --no-deps .)
    "${pip[@]}" -r "$root/requirements/runtime.txt"
fi
"${pip[@]}" -r "$root/requirements/tests.txt" -r "$root/requirements/lint.txt"
# The deployment extra (ExecuTorch, torchao, ...), pinned to versions that keep our torch: the
# constraint makes pip fail rather than replace it.
"${pip[@]}" -r "$root/requirements/deploy.txt" \
    -c <("$py" -c "import torch; print('torch==' + torch.__version__.split('+')[0])")
# mmdeploy 1.3.1 declares protobuf<=3.20.2, which would downgrade onnx below what onnxruntime
# needs; its code never imports protobuf, so it goes in without dependency resolution
# (requirements/mmdeploy.txt lists the few packages it imports that the stack lacks).
"${pip[@]}" --no-deps -r "$root/requirements/mmdeploy.txt"
"${pip[@]}" --no-deps --no-build-isolation -e "$root"

# An isolated or failed build yields mmcv without its compiled ops; refuse to go on with it.
"$py" -c "import mmcv._ext, mmcv; print('install_env: mmcv', mmcv.__version__, 'with compiled ops')"
touch "$stamp"
