"""Write the embedded digit datasets (scikit-learn's handwritten digits; nothing is downloaded).

    python tools/misc/make_digits.py {det,seg,cls,all} [--out DIR] [--seed N] [--num-train N]
                                [--num-val N] [--image-size H [W]] [--digit-size MIN MAX]
                                [--num-digits MIN MAX] [--force]

det: COCO layout in data/digits_det; seg: Cityscapes layout in data/digits_seg; cls: class folders
in data/digits_cls (data/ of the repository). With `all`, --out is the parent of the three.
Running again with the same arguments does nothing; other arguments need --force to replace a set
that this tool made. A directory that holds anything else (another directory, or files added to a
set) is never replaced. A second run for the same directory waits until the first one ends.
"""
import argparse
import os.path as osp

from mmxformer.cli import UsageError, check_writable_dir, exit_on_usage_error
from mmxformer.data.digits import make_digits_cls, make_digits_det, make_digits_seg
from mmxformer.data.digits.dataset_dir import read_manifest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA_DIR = osp.join(ROOT, 'data')
MAKERS = dict(det=make_digits_det, seg=make_digits_seg, cls=make_digits_cls)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('task', choices=[*MAKERS, 'all'], help='which set to write')
    parser.add_argument(
        '--out',
        help='output directory (with `all`: their parent); defaults to '
        f'{DATA_DIR}/digits_<task>')
    parser.add_argument('--seed', type=int, default=0, help='seed of the scenes (default 0)')
    parser.add_argument(
        '--num-train', type=int, help='training images (det 2000, seg 1000, '
        'cls 48000)')
    parser.add_argument(
        '--num-val',
        type=int,
        help='validation images (det 200, seg 100); for '
        'cls the test images (each held-out digit once: 360)')
    parser.add_argument(
        '--image-size',
        type=int,
        nargs='+',
        metavar='SIZE',
        help='H W, or one side for a square (det 160, seg 128 256, cls 32)')
    parser.add_argument(
        '--digit-size',
        type=int,
        nargs=2,
        metavar=('MIN', 'MAX'),
        help="least and most height in pixels of a digit's 8x8 cell "
        '(det, seg 28 64; cls 14 28)')
    parser.add_argument(
        '--num-digits',
        type=int,
        nargs=2,
        metavar=('MIN', 'MAX'),
        help='least and most digits per image (det 1 4, seg 1 5; not cls)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='replace a set that this tool made with other arguments (never '
        'a directory without its manifest)')
    args = parser.parse_args(argv)
    if args.image_size is not None and len(args.image_size) > 2:
        parser.error('--image-size takes H W, or one side for a square')
    if args.task == 'cls' and args.num_digits is not None:
        parser.error('--num-digits does not apply to cls (one digit per image)')
    return args


def maker_kwargs(task, args):
    """The arguments of ``task``'s maker that the command line sets."""
    kwargs = dict(
        seed=args.seed, force=args.force, num_train=args.num_train, digit_size=args.digit_size)
    if args.image_size is not None:
        kwargs['image_size'] = (args.image_size * 2)[:2]
    kwargs['num_test' if task == 'cls' else 'num_val'] = args.num_val
    if task != 'cls':
        kwargs['num_digits'] = args.num_digits
    return {key: value for key, value in kwargs.items() if value is not None}


def main(argv=None):
    """Write the sets.

    Raises:
        FileExistsError: A set's directory holds something that may not be replaced.
        UsageError: A set's directory cannot be written to, writing failed (a full disk), or
            the maker refuses an argument (a size or count out of its range).
    """
    args = parse_args(argv)
    tasks = list(MAKERS) if args.task == 'all' else [args.task]
    outs = {
        task: (osp.join(args.out or DATA_DIR, f'digits_{task}')
               if args.task == 'all' else args.out or osp.join(DATA_DIR, f'digits_{task}'))
        for task in tasks
    }
    for out in outs.values():  # a read-only disk, before any set is written
        if read_manifest(out) is None:  # else it may hold this set already: nothing to write
            check_writable_dir(osp.dirname(osp.abspath(out)), f'--out {out}')
    for task, out in outs.items():
        try:
            made = MAKERS[task](out, **maker_kwargs(task, args))
        except FileExistsError:
            raise
        except OSError as error:  # a full disk: the maker has removed what it had written
            raise UsageError(f'--out {out}: not written ({error}); nothing of it is left') from None
        except ValueError as error:  # the maker checks its arguments before it writes anything
            raise UsageError(str(error)) from None
        print(f'digits_{task}: {made}')


def run():
    try:
        main()
    except FileExistsError as error:
        raise UsageError(str(error)) from None


if __name__ == '__main__':
    exit_on_usage_error(run)
