from .checkpoint import convert_checkpoint, publish_checkpoint
from .download import ChecksumError, DownloadError, default_cache_dir, download_checkpoint
from .model_index import load_model_index, register_mmpretrain_models, resolve_model

__all__ = [
    'ChecksumError', 'DownloadError', 'convert_checkpoint', 'default_cache_dir',
    'download_checkpoint', 'load_model_index', 'publish_checkpoint', 'register_mmpretrain_models',
    'resolve_model'
]
