"""Turn a training checkpoint into a release file, as OpenMMLab publishes them.

Example:
    python tools/model_converters/publish_model.py work_dirs/xformer-s/epoch_300.pth releases/ \\
        --name xformer-s_8xb128_in1k --ema

Drops the optimizer, scheduler and message hub, keeps the raw weights (or, with --ema, those of
mmengine's EMAHook) and the meta, and writes <name>_<YYYYMMDD>-<first 8 hex of sha256>.pth
atomically. Prints the path and the SHA-256.
"""
import argparse

from mmxformer.checkpoint.publish import publish_checkpoint
from mmxformer.checkpoint.safe_load import UnsafeCheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='the training checkpoint')
    parser.add_argument('out_dir', help='directory of the release file')
    parser.add_argument('--name', required=True, help='model name, the start of the file name')
    parser.add_argument(
        '--ema', action='store_true', help='publish the EMA weights (a run with EMAHook)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        path, sha256 = publish_checkpoint(args.checkpoint, args.out_dir, args.name, ema=args.ema)
    except (ValueError, UnsafeCheckpointError, FileNotFoundError) as error:
        raise SystemExit(f'publish_checkpoint: {error}')
    print(path)
    print(f'sha256: {sha256}')
    return path, sha256


if __name__ == '__main__':
    main()
