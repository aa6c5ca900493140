"""Evaluate exported files (ExecuTorch .pte, ONNX) on a config's test set beside its PyTorch model.

    python tools/deployment/test_deployed.py CONFIG CHECKPOINT FILE [FILE ...] [--out FILE.json]
                                         [--overwrite] [--cfg-options ...]

Every FILE, exported from CHECKPOINT by export_executorch.py, export_onnx.py or quantize_onnx.py
at the test pipeline's input size, runs in its own runtime on the test set as the model's data
preprocessor prepares it; its outputs go through the toolbox's own post-processing (the
classifier's softmax, the detector's box decoding and NMS, the segmentor's resizing and argmax)
and the config's test_evaluator. The PyTorch model is evaluated on the same batches, as
tools/test.py evaluates it. Printed: each model's headline metric (top-1, mAP@0.5, mIoU), its
difference from PyTorch's, the agreement of its predictions with PyTorch's and the file size;
--out writes all the evaluators' metrics as JSON.
"""
import argparse
import json

from mmengine.config import DictAction

from mmxformer.cli import UsageError, check_output_file, exit_on_usage_error
from mmxformer.deployment.evaluate import evaluate_deployed
from mmxformer.tasks import task_of
from mmxformer.utils.config import load_config
from mmxformer.utils.fileio import write_text_atomically


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='the weights the files were exported from')
    parser.add_argument('files', nargs='+', metavar='FILE', help='.pte or .onnx files')
    parser.add_argument('--out', help='write the metrics of every model to this JSON file')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. test_dataloader.batch_size=1')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.out:
        check_output_file(args.out, '--out', args.overwrite)
    cfg = load_config(args.config, args.cfg_options)
    try:
        results = evaluate_deployed(cfg, args.checkpoint, args.files)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    headline = results['headline']
    reference = results['models']['pytorch']['metrics'][headline]
    print(f"{results['images']} test images; agreement: {task_of(cfg).agreement_description}")
    print(f'| model | {headline} | difference | agreement | MiB |')
    print('|---|---|---|---|---|')
    for name, record in results['models'].items():
        value = record['metrics'][headline]
        if name == 'pytorch':
            print(f'| PyTorch ({args.checkpoint}) | {value:.4g} | | | |')
            continue
        print(f"| {name} | {value:.4g} | {value - reference:+.4g} | "
              f"{record['agreement']:.4f} | {record['bytes'] / 2**20:.2f} |")
    if args.out:
        write_text_atomically(args.out, json.dumps(results, indent=2) + '\n')
        print(f'Wrote {args.out}')


if __name__ == '__main__':
    exit_on_usage_error(main)
