"""Download a checkpoint of the model zoo, or any URL, into the cache, verified by its SHA-256.

Examples:
    python tools/misc/download_checkpoint.py MODEL_NAME
    python tools/misc/download_checkpoint.py https://host/xformer-s_in1k_20240517-1a2b3c4d.pth
    python tools/misc/download_checkpoint.py https://host/weights.pth --sha256 HEX \
        --out checkpoints/

Prints the path of the verified file. An https URL without a known hash is downloaded over
verified TLS and its SHA-256 printed on stderr, to pin it (--sha256, or #sha256=HEX after the
URL); plain http needs the full hash. The cache is $MMXFORMER_HOME/checkpoints, by default
~/.cache/mmxformer/checkpoints.
"""
import argparse

from mmxformer.checkpoint.download import DownloadError, download_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('name_or_url', help='a model name of model-index.yml, or an http(s) URL')
    parser.add_argument(
        '--sha256',
        help='the expected SHA-256 (over https, its first 8+ hex digits are enough); plain http '
        'needs the full hash, from here, the index or a #sha256=HEX after the URL')
    parser.add_argument('--out', help='directory to download into (default: the cache)')
    parser.add_argument(
        '--timeout',
        type=float,
        default=30.,
        help='seconds to wait for the server, at the start and between reads (default: 30)')
    parser.add_argument(
        '--deadline',
        type=float,
        help='seconds the whole download may take (default: $MMXFORMER_DOWNLOAD_DEADLINE, '
        'else 1800)')
    parser.add_argument(
        '--max-size',
        type=int,
        help='the most bytes the file may have (default: $MMXFORMER_DOWNLOAD_MAX_SIZE, else '
        '2 GiB)')
    parser.add_argument('--index', help="model-index.yml to resolve names (default: the package's)")
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        path = download_checkpoint(
            args.name_or_url,
            out_dir=args.out,
            sha256=args.sha256,
            progress=not args.quiet,
            timeout=args.timeout,
            index=args.index,
            deadline=args.deadline,
            max_size=args.max_size)
    except (DownloadError, ValueError) as error:
        raise SystemExit(f'download_checkpoint: {error}')
    print(path)
    return path


if __name__ == '__main__':
    main()
