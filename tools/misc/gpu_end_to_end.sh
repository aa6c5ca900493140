#!/usr/bin/env bash
# One short end-to-end check of a machine with a CUDA GPU, run from the repository root after
# `make venv` (tools/misc/install_env.sh builds mmcv's CUDA ops where nvcc is present):
#   1. the GPU's name, and mmcv's CUDA NMS on CUDA tensors (what YOLOv3's test needs);
#   2. the digits detector (configs/xformer_yolov3_digits.py) trained for one epoch with --amp
#      (fp16 on CUDA), then tested;
#   3. the benchmark of XFormer-S and MobileViT-S at 256², 512² and 1024², fp32 then bf16.
# Everything is written under $OUT (default work_dirs/gpu_end_to_end); the tables are printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PY:-.venv/bin/python}
out=${OUT:-work_dirs/gpu_end_to_end}
mkdir -p "$out"

"$py" - <<'PYTHON' | tee "$out/gpu.txt"
import torch
from mmcv.ops import nms
if not torch.cuda.is_available():
    raise SystemExit('gpu_end_to_end: torch sees no CUDA GPU')
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]]).cuda()
kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]).cuda(), 0.5)[1]
assert kept.tolist() == [0, 2], kept
print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}: '
      'mmcv CUDA nms ok')
PYTHON

data=$out/digits_det
"$py" tools/misc/make_digits.py det --out "$data"
options=(
    "train_dataloader.dataset.data_root=$data/" "val_dataloader.dataset.data_root=$data/"
    "test_dataloader.dataset.data_root=$data/"
    "val_evaluator.ann_file=$data/annotations/instances_val2017.json"
    "test_evaluator.ann_file=$data/annotations/instances_val2017.json" train_cfg.max_epochs=1)
"$py" tools/train.py configs/xformer_yolov3_digits.py --amp --work-dir "$out/train" \
    --cfg-options "${options[@]}"
"$py" tools/test.py configs/xformer_yolov3_digits.py "$(cat "$out/train/last_checkpoint")" \
    --work-dir "$out/test" --cfg-options "${options[@]}"

for amp in fp32 bf16; do
    "$py" tools/analysis_tools/benchmark.py --device cuda --models xformer-s mobilevit-s \
        --sizes 256 512 1024 --out-dir "$out/benchmark_$amp" $([ $amp = bf16 ] && echo --amp bf16)
done
