#!/usr/bin/env bash
# Create a virtual environment with a tested stack, unless it is already complete.
#
#     bash tools/misc/install_env.sh                               # .venv/, the pinned stack
#     VENV=.venv-classic STACK=classic bash tools/misc/install_env.sh   # torch 2.1 + mmcv 2.1.0
#
# STACK=pinned (default): requirements/runtime.txt (torch 2.14.1), the tests, the linters, the
# deployment extra and mmdeploy. STACK=classic: requirements/classic.txt (torch 2.1.2, the stack
# most mmdet 3.x users have) and pytest only.
#
# mmcv 2.1.0 is published as source only. When ../shared/wheels (classic: its torch2.1/ folder)
# holds a wheel built for exactly that torch, pip takes it from there (--find-links); otherwise
# mmcv is compiled here (12-17 min on 2 cores): without build isolation (so it sees our torch),
# with setuptools < 81 (its setup.py imports pkg_resources) and, for torch 2.14, -std=c++20 (its
# headers need it; mmcv asks for c++17). The prebuilt wheels have CPU ops only: on a machine with
# a CUDA GPU, mmcv is compiled with CUDA ops where nvcc is found, and the set-up stops otherwise
# (a detector's NMS would get CUDA tensors and find no CUDA kernel).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
stack=${STACK:-pinned}
case $stack in
    pinned) venv=${VENV:-$root/.venv}; stack_reqs=$root/requirements/runtime.txt
            wheels=$root/../shared/wheels; cxx_std=c++20
            reqs=("$stack_reqs" "$root/requirements/tests.txt" "$root/requirements/lint.txt"
                  "$root/requirements/deploy.txt" "$root/requirements/mmdeploy.txt") ;;
    classic) venv=${VENV:-$root/.venv-classic}; stack_reqs=$root/requirements/classic.txt
             wheels=$root/../shared/wheels/torch2.1; cxx_std=c++17; reqs=("$stack_reqs") ;;
    *) echo "install_env: STACK must be pinned or classic, not '$stack'" >&2; exit 1 ;;
esac
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
py=$venv/bin/python
stamp=$venv/.mmxformer-installed
reqs+=("$root/setup.py")

if [ -f "$stamp" ] && [ -z "$(find "${reqs[@]}" -newer "$stamp")" ]; then
    exit 0
fi

[ -x "$py" ] || python3.11 -m venv "$venv" || python3 -m venv "$venv"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" 'pip>=24' 'setuptools>=77,<81' wheel ninja psutil

# torch first: whether this machine has a CUDA GPU decides which mmcv it needs
"${pip[@]}" $(grep -E '^(torch|torchvision|numpy)\b' "$stack_reqs")
cuda=$("$py" -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$cuda" = 1 ] && ! command -v nvcc >/dev/null; then
    echo "install_env: this machine has a CUDA GPU, and mmcv's CUDA ops must be compiled for it," \
         "but there is no nvcc: install the CUDA toolkit of torch's CUDA version" \
         "($("$py" -c 'import torch; print(torch.version.cuda)')) and run this again" >&2
    exit 1
fi

if [ "$cuda" = 0 ] && ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    echo "install_env: using the prebuilt mmcv wheel (CPU ops) in $wheels"
    "${pip[@]}" --find-links "$wheels" -r "$stack_reqs"
else
    ops=CPU; [ "$cuda" = 1 ] && ops=CUDA
    echo "install_env: compiling mmcv 2.1.0 from source with $ops ops (12-17 min on 2 cores)"
    # the stack without OpenMMLab's packages; comments (whole lines or after a requirement) cut
    "${pip[@]}" $(sed 's/[[:space:]]*#.*//' "$stack_reqs" |
        grep -v -E '^$|^(mmcv|mmdet|mmsegmentation|mmpretrain)')
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    # pip prepares the sdist's metadata, which runs its setup.py: in the venv, not in an
    # isolated build environment whose setuptools >= 81 lacks pkg_resources
    "$py" -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: mmcv==2.1.0 \
        -d "$src"
    tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
    sed -i "s/-std=c++17/-std=$cxx_std/" "$src/mmcv-2.1.0/setup.py"
    (cd "$src/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=$cuda MAX_JOBS=${MAX_JOBS:-2} \
        "${pip[@]}" --no-build-isolation --no-deps .)
    "${pip[@]}" -r "$stack_reqs"
fi

if [ "$stack" = pinned ]; then
    "${pip[@]}" -r "$root/requirements/tests.txt" -r "$root/requirements/lint.txt"
    # The deployment extra (ExecuTorch, torchao, ...), pinned to versions that keep our torch:
    # the constraint makes pip fail rather than replace it.
    "${pip[@]}" -r "$root/requirements/deploy.txt" \
        -c <("$py" -c "import torch; print('torch==' + torch.__version__.split('+')[0])")
    # mmdeploy 1.3.1 declares protobuf<=3.20.2, which would downgrade onnx below what
    # onnxruntime needs; its code never imports protobuf, so it goes in without dependency
    # resolution (requirements/mmdeploy.txt lists the few packages it imports that the stack
    # lacks).
    "${pip[@]}" --no-deps -r "$root/requirements/mmdeploy.txt"
else
    "${pip[@]}" pytest pytest-xdist
fi
"${pip[@]}" --no-deps --no-build-isolation -e "$root"

# An isolated or failed build yields mmcv without its compiled ops; refuse to go on with it.
"$py" -c "import mmcv._ext, mmcv; print('install_env: mmcv', mmcv.__version__, 'with compiled ops')"
touch "$stamp"
