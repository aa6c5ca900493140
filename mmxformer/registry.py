"""mmxformer's registries: children of mmengine's roots, as in mmpretrain, mmdet and mmseg.

Every class registers itself into one of these with a decorator; ``locations`` lets a registry
import the modules that fill it the first time a name is looked up. ``type='mmxformer.XFormer'``
resolves from any scope. :func:`mmxformer.apis.register_all_modules` (run by ``import
mmxformer``) also makes the plain names (``type='XFormer'``) resolve from the default scopes of
mmpretrain, mmdet and mmseg.

This module imports nothing of mmxformer: it is the leaf every other module may depend on.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

#: The backbone and the token mixers of its XF blocks.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmxformer', locations=['mmxformer.models'])
#: Training hooks.
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmxformer', locations=['mmxformer.engine.hooks'])
#: Optimizer wrappers.
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    scope='mmxformer',
    locations=['mmxformer.engine.optimizers'])
#: What differs between the toolboxes (outputs, predictions, evaluation, ...): one adapter per
#: toolbox, registered under the toolbox's scope name (:mod:`mmxformer.tasks`).
TASKS = Registry('task', scope='mmxformer', locations=['mmxformer.tasks'])

#: The toolboxes whose default scopes resolve mmxformer's plain names, and whose configs the
#: tools run.
TOOLBOXES = ('mmpretrain', 'mmdet', 'mmseg')
