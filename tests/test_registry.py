import importlib
import subprocess
import sys
import textwrap

import pytest
from mmengine.registry import DefaultScope

import mmxformer
from mmxformer.models import XFormer

SCOPES = ['mmpretrain', 'mmdet', 'mmseg']


@pytest.mark.parametrize('scope', SCOPES)
@pytest.mark.parametrize('type_name', ['XFormer', 'mmpretrain.XFormer', 'mmxformer.XFormer'])
def test_builds_under_every_default_scope(scope, type_name):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(
            dict(type=type_name, arch='xxsmall', out_indices=(2, 3, 4),
                 attn_cfg=dict(type='MultiheadSelfAttention')))
    assert isinstance(model, XFormer)
    assert model.out_channels == (48, 64, 80)


def test_registered_in_all_installed_toolboxes():
    assert mmxformer.TOOLBOXES == SCOPES


def test_import_twice_and_reload_do_not_raise():
    import mmxformer as again  # noqa: F401
    importlib.reload(importlib.import_module('mmxformer.models.xformer'))
    importlib.reload(mmxformer)
    from mmdet.registry import MODELS
    assert MODELS.get('XFormer').__module__ == 'mmxformer.models.xformer'


def test_other_class_with_the_same_name_is_not_overwritten():
    from mmxformer.registry import _register
    from mmengine.registry import Registry
    registry = Registry('test')

    @registry.register_module(name='XFormer')
    class Foreign:
        pass

    with pytest.raises(KeyError, match='already taken by .*Foreign'):
        _register(registry, XFormer)


def run_python(code, cwd):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


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
    config.write_text(textwrap.dedent(f"""
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
