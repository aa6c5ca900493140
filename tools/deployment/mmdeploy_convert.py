"""Convert a model with mmdeploy's own APIs on this stack, and check it against PyTorch.

    python tools/deployment/mmdeploy_convert.py DEPLOY_CFG MODEL_CFG CHECKPOINT IMG \
        --work-dir DIR [--test-img IMG ...] [--device cpu] [--overwrite] [--cfg-options ...]

What mmdeploy's ``tools/deploy.py`` does for the ONNX Runtime backend, in this process:
``mmdeploy.apis.torch2onnx`` exports the model (traced on IMG) to ``DIR/<save_file>`` of the
deploy config (``end2end.onnx``), inside
:func:`mmxformer.deployment.mmdeploy.compat.torchscript_onnx_export`, which gives mmdeploy 1.3.1
the TorchScript-based exporter it was written for on torch >= 2.9. Then the backend model
(``mmdeploy.apis.utils.build_task_processor(...).build_backend_model``) and the toolbox's
PyTorch model run on the test images (default: IMG) and their predictions are compared
(classifier: scores within 1e-4; segmentor: label maps, and logits within 1e-4 where the graph
outputs them; detector: same detections above the model's score threshold, box IoU >= 0.99,
scores within 1e-3). The file is moved into DIR only when they agree; otherwise nothing is
written and the exit status is 1. Refused before the export: a missing file, a checkpoint of
another model, a DIR that cannot be written to or has less space free than the model's weights.
Deploy configs for XFormer: configs/mmdeploy/.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile

from mmengine.config import DictAction

from mmxformer.checkpoint.state_dict import check_pretrained_keys
from mmxformer.cli import check_writable_dir
from mmxformer.deployment.mmdeploy.check import check_records, compare_with_pytorch, format_record
from mmxformer.deployment.mmdeploy.compat import torchscript_onnx_export
from mmxformer.deployment.preflight import check_disk_space, weight_bytes
from mmxformer.tasks.base import BackendMismatchError
from mmxformer.utils.config import build_model
from mmxformer.utils.fileio import naming_output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('deploy_cfg', help='mmdeploy deploy config (configs/mmdeploy/*.py)')
    parser.add_argument('model_cfg', help='model config')
    parser.add_argument('checkpoint', help='weights to convert')
    parser.add_argument('img', help='image the export is traced on')
    parser.add_argument('--work-dir', required=True, help='where the backend files go')
    parser.add_argument('--test-img', nargs='+', help='images of the check (default: IMG)')
    parser.add_argument('--device', default='cpu', help='device of the conversion and check')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace the backend file if DIR holds one already')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the model config, e.g. '
        'model.test_cfg.mode=whole')
    return parser.parse_args(argv)


def convert(deploy_cfg_path,
            model_cfg_path,
            checkpoint,
            img,
            work_dir,
            test_images=None,
            device='cpu',
            overwrite=False,
            cfg_options=None):
    """Export with ``mmdeploy.apis.torch2onnx``, check, and move the file into ``work_dir``.

    Args:
        deploy_cfg_path (str | mmengine.Config): mmdeploy deploy config (ONNX Runtime
            backend).
        model_cfg_path (str | mmengine.Config): Model config.
        checkpoint (str): Weights to convert.
        img (str): Image the export is traced on.
        work_dir (str): Directory of the backend file.
        test_images (list[str], optional): Images of the check. Defaults to ``[img]``.
        device (str): Device. Defaults to 'cpu'.
        overwrite (bool): Replace an existing backend file. Defaults to False.
        cfg_options (dict, optional): Settings of the model config to override.

    Returns:
        tuple[str, list[dict]]: the backend file and the records of the check
        (:func:`mmxformer.deployment.mmdeploy.check.compare_with_pytorch`).

    Raises:
        FileNotFoundError: a config, the checkpoint (a local one) or an image is missing.
        FileExistsError: the backend file exists and ``overwrite`` is not set.
        ValueError: the deploy config is not for ONNX Runtime, the segmentor tests with
            sliding windows, the checkpoint does not fit the model, ``work_dir`` cannot be
            written to or has too little space free (the model's weights).
        BackendMismatchError: the backend model and PyTorch disagree; nothing is written.
        OSError: writing failed (the disk filled up meanwhile); it names the backend file,
            and nothing is left of it.
    """
    from mmdeploy.apis import torch2onnx
    from mmdeploy.utils import get_backend, get_ir_config, load_config
    _check_files([('deploy config', deploy_cfg_path), ('model config', model_cfg_path)])
    deploy_cfg, model_cfg = load_config(deploy_cfg_path, model_cfg_path)
    model_cfg.merge_from_dict(cfg_options or {})
    if get_backend(deploy_cfg).value != 'onnxruntime':
        raise ValueError(f'{deploy_cfg_path} is for the {get_backend(deploy_cfg).value} backend; '
                         'this tool converts for onnxruntime (configs/mmdeploy/*_onnxruntime_*)')
    if model_cfg.model.get('test_cfg', {}).get('mode') == 'slide':
        raise ValueError('The model tests with sliding windows; mmdeploy exports whole-image '
                         'inference only. Pass --cfg-options model.test_cfg.mode=whole to '
                         'convert it and check it against whole-image inference.')
    save_file = get_ir_config(deploy_cfg)['save_file']
    target = osp.join(work_dir, save_file)
    if osp.exists(target) and not overwrite:
        raise FileExistsError(f'{target} exists: pass --overwrite to replace it, or choose '
                              'another --work-dir')
    _check_files([('image', img)] + [('test image', image) for image in test_images or []] +
                 ([] if '://' in checkpoint else [('checkpoint', checkpoint)]))
    check_writable_dir(work_dir, f'--work-dir {work_dir}')
    # mmdeploy loads the checkpoint with mmengine's load_checkpoint; reading it here first, with
    # weights_only=True, refuses a checkpoint that would run code before mmdeploy unpickles it,
    # and one of another model before the export
    model = build_model(model_cfg)
    check_pretrained_keys(model, checkpoint)
    check_disk_space(target, weight_bytes(model), "the model's weights")
    os.makedirs(work_dir, exist_ok=True)
    staging = tempfile.mkdtemp(dir=work_dir, prefix='.mmdeploy_convert.')
    try:
        with naming_output(target), torchscript_onnx_export():
            torch2onnx(img, staging, save_file, deploy_cfg, model_cfg, checkpoint, device=device)
        records = compare_with_pytorch(deploy_cfg, model_cfg, checkpoint,
                                       [osp.join(staging, save_file)], test_images or [img], device)
        check_records(records)
        os.replace(osp.join(staging, save_file), target)
    finally:
        shutil.rmtree(staging)
    return target, records


def _check_files(files):
    """Raise ``FileNotFoundError`` for the first of ``[(what, path), ...]`` that is not a file
    (a config may be given as a Config)."""
    for what, path in files:
        if isinstance(path, str) and not osp.isfile(path):
            raise FileNotFoundError(f'{what} {path}: no such file')


def main(argv=None):
    args = parse_args(argv)
    try:
        target, records = convert(args.deploy_cfg, args.model_cfg, args.checkpoint, args.img,
                                  args.work_dir, args.test_img, args.device, args.overwrite,
                                  args.cfg_options)
    except (BackendMismatchError, FileExistsError, FileNotFoundError, ValueError) as error:
        sys.exit(f'Not converted: {error}')
    except OSError as error:  # of the disk: full, read-only
        if error.errno is None:
            raise
        sys.exit(f'Not converted: {error.filename}: {error.strerror}')
    for record in records:
        print(f'backend vs PyTorch, {format_record(record)}')
    print(f'Wrote {target}')


if __name__ == '__main__':
    main()
