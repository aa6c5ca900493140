"""Check the datasets of a config before a run: no annotation file would run code when read (a
pickle or YAML file is read with a loader that allows plain data only), every file exists, images
and label maps decode with the sizes stated, labels, classes and boxes are valid, no set is empty
(see :mod:`mmxformer.data.checks`).

Examples:
    python tools/misc/verify_dataset.py configs/xformer_yolov3_digits.py
    python tools/misc/verify_dataset.py configs/xformer_yolov3_coco.py --splits val --max-scan 500

Prints one line per distinct dataset, e.g. ``train: CocoDataset data/coco/: 117266 images, 5000
checked``; on the first problem, prints it and exits with status 1.
"""
import argparse

from mmengine.config import DictAction

from mmxformer.data.checks import MAX_SCAN, SPLITS, check_dataset_config
from mmxformer.utils.config import load_config


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} is not a positive number')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path (or package::name)')
    parser.add_argument(
        '--splits',
        nargs='+',
        choices=SPLITS,
        default=list(SPLITS),
        help='data loaders to check (default: all)')
    parser.add_argument(
        '--max-scan',
        type=positive_int,
        default=MAX_SCAN,
        help=f'most samples decoded per dataset, an even sample of a larger set '
        f'(default: {MAX_SCAN}); every file must exist all the same')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        lines = check_dataset_config(cfg, max_scan=args.max_scan, splits=args.splits)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'verify_dataset: {error}')
    for line in lines:
        print(line)
    return lines


if __name__ == '__main__':
    main()
