"""mmxformer: XFormer (Cross Feature Attention) for mmpretrain, mmdet and mmsegmentation.

Importing the package registers the backbone into every installed toolbox; a config needs only
``custom_imports = dict(imports=['mmxformer'], allow_failed_imports=False)``.
"""
from . import random_state  # noqa: F401 (registers RandomStateHook)
from .checkpoint import install_safe_globals
from .registry import register_all
from .version import __version__

install_safe_globals()  # mmengine's own checkpoints (resume) under torch.load(weights_only=True)
TOOLBOXES = register_all()

__all__ = ['__version__', 'TOOLBOXES']
