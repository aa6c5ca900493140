"""The one place where mmxformer's modules meet the OpenMMLab registries.

``MODELS`` is mmxformer's own registry (scope ``mmxformer``, a child of mmengine's root, so
``type='mmxformer.XFormer'`` resolves from any scope). :func:`register_all` adds the
backbone to the ``MODELS`` registry of every installed toolbox (mmpretrain, mmdet, mmseg), so that
``type='XFormer'`` works whatever a config's ``default_scope`` is. It is idempotent: running it
again, or re-importing the package, never raises "already registered".
"""
import importlib

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmxformer')

TOOLBOXES = ('mmpretrain', 'mmdet', 'mmseg')


def toolbox_registries():
    """``{toolbox: its MODELS registry}`` for the toolboxes that are installed here."""
    registries = {}
    for toolbox in TOOLBOXES:
        try:
            module = importlib.import_module(f'{toolbox}.registry')
        except ModuleNotFoundError as error:
            if error.name not in (toolbox, f'{toolbox}.registry'):
                raise  # installed but broken: say so rather than skip it
            continue
        registries[toolbox] = module.MODELS
    return registries


def _register(registry, module):
    """Register ``module`` unless the same class (by qualified name) is already there."""
    name = module.__name__
    existing = registry.module_dict.get(name)
    if existing is None or _qualname(existing) == _qualname(module):
        registry.register_module(module=module, force=True)
    else:
        raise KeyError(f'{registry.scope}.{name} is already taken by {_qualname(existing)}; '
                       f'mmxformer cannot register {_qualname(module)} under the same name')


def _qualname(cls):
    return f'{cls.__module__}.{cls.__qualname__}'


def register_all():
    """Register the attentions and the backbone into ``MODELS``, and the backbone into the
    ``MODELS`` registry of each installed toolbox.

    Returns:
        list[str]: the toolboxes XFormer was registered into.
    """
    from .models import ATTENTIONS, XFormer
    for module in (*ATTENTIONS, XFormer):
        _register(MODELS, module)
    registries = toolbox_registries()
    for registry in registries.values():
        _register(registry, XFormer)
    return list(registries)


def build_attention(cfg, embed_dims):
    """Build an attention from mmxformer's registry, whatever the current default scope.

    ``MODELS.build`` would switch to the registry of the config's ``default_scope`` (mmdet's, for
    a detector), which does not hold the attentions; looking the type up here does not.
    """
    cfg = dict(cfg)
    attn_type = cfg.pop('type')
    cls = MODELS.get(attn_type) if isinstance(attn_type, str) else attn_type
    if cls is None:
        raise KeyError(f'Unknown attention type {attn_type!r}; mmxformer has '
                       f'{sorted(MODELS.module_dict)}')
    return cls(embed_dims=embed_dims, **cfg)
