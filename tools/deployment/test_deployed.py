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
--out writes all the evaluators' metrics as JSON. Before anything is evaluated, every FILE is
loaded by its runtime and its outputs and input size are checked against the config's model: a
damaged file, or one exported from another config, is one line that says what it is.
"""
import argparse
import json

from mmengine.config import DictAction

from mmxformer.cli import UsageError, check_output_file, exit_on_usage_error, load_run_config
from mmxformer.deployment.evaluate import evaluate_deployed
from mmxformer.deployment.preflight import check_disk_space, check_output_is_no_input
from mmxformer.tasks import task_of
from mmxformer.utils.fileio import write_text_atomically

#: What --out needs free at least: its JSON takes a few hundred bytes a model, a block of a disk.
METRICS_BYTES = 4096


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
        inputs = {'the config': args.config, 'the checkpoint': args.checkpoint}
        inputs.update({f'evaluated file {i + 1}': path for i, path in enumerate(args.files)})
        try:  # before the evaluation, which takes a while
            check_output_is_no_input(args.out, inputs)
            check_disk_space(args.out, METRICS_BYTES, 'the metrics')
        except ValueError as error:
            raise UsageError(f'--out {error}') from None
    cfg = load_run_config(args.config, args.cfg_options)
    try:
        results = evaluate_deployed(cfg, args.checkpoint, args.files)
    # ImportError: a .pte, and ExecuTorch is not installed (the message says how to install it)
    except (ValueError, FileNotFoundError, ImportError) as error:
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
