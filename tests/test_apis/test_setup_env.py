import importlib
import subprocess
import sys
import textwrap

import pytest
from conftest import installed
from mmengine.registry import DefaultScope

import mmxformer
from mmxformer.models import XFormer

ALL_SCOPES = ['mmpretrain', 'mmdet', 'mmseg']
INSTALLED = [scope for scope in ALL_SCOPES if installed(scope)]
# one parameter a toolbox, skipped where it is not installed
SCOPES = [pytest.param(scope, marks=pytest.mark.needs(scope)) for scope in ALL_SCOPES]


@pytest.mark.parametrize('scope', SCOPES)
@pytest.mark.parametrize('type_name', ['XFormer', 'mmpretrain.XFormer', 'mmxformer.XFormer'])
def test_builds_under_every_default_scope(scope, type_name):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(
            dict(
                type=type_name,
                arch='xxsmall',
                out_indices=(2, 3, 4),
                attn_cfg=dict(type='MultiheadSelfAttention')))
    assert isinstance(model, XFormer)
    assert model.out_channels == (48, 64, 80)


def test_registered_in_all_installed_toolboxes():
    assert mmxformer.TOOLBOXES == INSTALLED


def test_registering_again_does_not_raise():
    import mmxformer as again  # noqa: F401
    assert mmxformer.register_all_modules() == INSTALLED
    from mmengine.registry import MODELS
    assert MODELS.get('XFormer') is XFormer


def test_other_class_with_the_same_name_is_not_overwritten():
    from mmengine.registry import Registry

    from mmxformer.apis.setup_env import register_once
    registry = Registry('test')

    @registry.register_module(name='XFormer')
    class Foreign:
        pass

    with pytest.raises(KeyError, match='already taken by .*Foreign'):
        register_once(registry, XFormer)


def run_python(code, cwd):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=cwd,
                          capture_output=True,
                          text=True,
                          timeout=300)


def test_works_with_only_some_toolboxes_installed(tmp_path):
    result = run_python(
        """
        import sys
        sys.modules['mmdet'] = sys.modules['mmseg'] = None  # as if not installed
        import mmxformer
        print(mmxformer.TOOLBOXES)
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['mmpretrain']"


@pytest.mark.parametrize('scope', SCOPES)
def test_user_config_outside_the_repository(tmp_path, scope):
    """A config in the user's own folder needs only custom_imports and type='XFormer'."""
    config = tmp_path / 'my_config.py'
    config.write_text(
        textwrap.dedent(f"""
        default_scope = '{scope}'
        custom_imports = dict(imports=['mmxformer'], allow_failed_imports=False)
        backbone = dict(type='XFormer', arch='xxsmall', out_indices=(2, 3, 4))
        """))
    result = run_python(
        f"""
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile({str(config)!r})
        init_default_scope(cfg.default_scope)
        from {scope}.registry import MODELS
        model = MODELS.build(cfg.backbone)
        print(type(model).__name__, model.out_channels)
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == 'XFormer (48, 64, 80)'


FRESH_IMPORT = """
import mmxformer  # nothing else of mmxformer: what the import alone registers
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
import importlib, torch
registry = importlib.import_module('{scope}.registry')
with DefaultScope.overwrite_default_scope('{scope}'):
    for attn in ('CrossFeatureAttention', 'MultiheadSelfAttention', 'IdentityMixer'):
        model = registry.MODELS.build(dict(type='XFormer', arch='xxsmall', out_indices=(4, ),
                                           attn_cfg=dict(type=attn)))
        print(type(model).__name__, type(model.stages[2][-1].layers[0].attn).__name__)
    hook = registry.HOOKS.build(dict(type='RandomStateHook'))
    wrapper = build_optim_wrapper(torch.nn.Linear(1, 1), dict(
        type='CPUBF16OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    print(type(hook).__name__, type(wrapper).__name__)
"""


@pytest.mark.parametrize('scope', SCOPES)
def test_a_bare_import_registers_every_name_in_every_scope(scope, tmp_path):
    """In a fresh interpreter: the backbone, its three attentions, the hook and the optim wrapper
    by their plain names, from the default scope of each toolbox."""
    result = run_python(FRESH_IMPORT.format(scope=scope), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:4] == [
        'XFormer CrossFeatureAttention', 'XFormer MultiheadSelfAttention', 'XFormer IdentityMixer',
        'RandomStateHook CPUBF16OptimWrapper'
    ]
