"""The public API: registration, and the model zoo's checkpoints."""
from ..checkpoint.download import (ChecksumError, DownloadError, default_cache_dir,
                                   download_checkpoint)
from ..checkpoint.model_index import load_model_index, register_mmpretrain_models, resolve_model
from ..checkpoint.publish import convert_checkpoint, publish_checkpoint
from .setup_env import register_all_modules

__all__ = [
    'ChecksumError', 'DownloadError', 'convert_checkpoint', 'default_cache_dir',
    'download_checkpoint', 'load_model_index', 'publish_checkpoint', 'register_all_modules',
    'register_mmpretrain_models', 'resolve_model'
]
