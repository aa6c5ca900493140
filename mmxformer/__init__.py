"""mmxformer: XFormer (Cross Feature Attention) for mmpretrain, mmdet and mmsegmentation.

Importing the package registers everything (:func:`mmxformer.apis.register_all_modules`), so a
config needs only ``custom_imports = dict(imports=['mmxformer'], allow_failed_imports=False)``.
"""
from .apis import register_all_modules
from .version import __version__

TOOLBOXES = register_all_modules()

__all__ = ['__version__', 'TOOLBOXES', 'register_all_modules']
