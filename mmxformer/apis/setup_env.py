"""Registering mmxformer's modules, as each OpenMMLab toolbox's ``register_all_modules`` does."""
from typing import List

from .. import engine, models, registry  # noqa: F401 (the modules register themselves)
from ..checkpoint.loaders import install_checkpoint_loaders
from ..checkpoint.model_index import register_mmpretrain_models
from ..checkpoint.safe_globals import install_safe_globals
from ..registry import TOOLBOXES
from ..utils.imports import import_if_installed

#: The registries of :mod:`mmxformer.registry` whose classes are added to the toolboxes' own.
SHARED_REGISTRIES = ('MODELS', 'HOOKS', 'OPTIM_WRAPPERS')


def register_all_modules() -> List[str]:
    """Register every module of mmxformer, and make it reachable from every installed toolbox.

    - the backbone, the attentions, the hook and the optim wrapper register themselves into
      :mod:`mmxformer.registry` when their modules are imported (here);
    - each of them is added to mmengine's root registry of the same kind, so that
      ``type='XFormer'`` or ``type='RandomStateHook'`` resolves whatever a config's
      ``default_scope`` is (every scope falls back to the root), and to mmpretrain's, mmdet's
      and mmseg's where installed (``type='mmdet.XFormer'``);
    - the classification metafile's models become names of mmpretrain's model API
      (``get_model``, ``list_models``, ``inference_model``, ``ImageClassificationInferencer``);
    - the globals of mmengine's own checkpoints join torch's ``weights_only`` allow-list, and
      mmengine's checkpoint loaders become safe ones (verified downloads, ``weights_only=True``).

    Idempotent: running it again, or reloading a module, never raises "already registered"; a
    *different* class under one of mmxformer's names in a toolbox's registry is an error.

    Returns:
        list[str]: The toolboxes found.
    """
    install_safe_globals()
    install_checkpoint_loaders()
    toolboxes = toolbox_registries()
    for name in SHARED_REGISTRIES:
        ours = getattr(registry, name)
        # mmengine's root (the parent every scope falls back to), then each toolbox's own
        for target in (ours.parent, *(getattr(module, name) for module in toolboxes.values())):
            for cls in ours.module_dict.values():
                register_once(target, cls)
    register_mmpretrain_models()
    return list(toolboxes)


def toolbox_registries():
    """``{toolbox: its registry module}`` for the toolboxes that are installed here."""
    modules = {toolbox: import_if_installed(f'{toolbox}.registry') for toolbox in TOOLBOXES}
    return {toolbox: module for toolbox, module in modules.items() if module is not None}


def register_once(registry, cls):
    """Register ``cls`` into ``registry`` unless the same class (by qualified name) is there.

    Raises:
        KeyError: Another class holds the name.
    """
    name = cls.__name__
    existing = registry.module_dict.get(name)
    if existing is None or _qualname(existing) == _qualname(cls):
        registry.register_module(module=cls, force=True)  # force: a reloaded module's class
    else:
        raise KeyError(f'{registry.scope}.{name} is already taken by {_qualname(existing)}; '
                       f'mmxformer cannot register {_qualname(cls)} under the same name')


def _qualname(cls):
    return f'{cls.__module__}.{cls.__qualname__}'
