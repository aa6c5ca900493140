"""What ``import mmxformer`` changes in the host process, compared in a fresh interpreter before
and after the import: exactly what README.md's "What `import mmxformer` changes" lists."""
import json
import subprocess
import sys
import textwrap

from conftest import ROOT

SNAPSHOT = textwrap.dedent('''
    import importlib, json, logging, os, random, sys, warnings
    import numpy as np
    import torch, torch.hub, torch.serialization
    import mmengine.registry as roots
    from mmengine.registry import DefaultScope, Registry
    from mmengine.runner.checkpoint import CheckpointLoader

    def registries():
        found = {f'mmengine.{name}': value for name, value in vars(roots).items()
                 if isinstance(value, Registry)}
        for toolbox in ('mmpretrain', 'mmdet', 'mmseg'):
            if toolbox in sys.modules:
                module = importlib.import_module(f'{toolbox}.registry')
                found.update({f'{toolbox}.{name}': value for name, value in vars(module).items()
                              if isinstance(value, Registry)})
        return found

    def state():
        hub = sys.modules.get('mmpretrain.apis')
        return dict(
            modules=sorted(name for name in sys.modules if not name.startswith('_')),
            registries={name: {key: f'{cls.__module__}.{cls.__qualname__}'
                               for key, cls in registry.module_dict.items()}
                        for name, registry in registries().items()},
            children={name: sorted(registry.children) for name, registry in registries().items()},
            schemes={prefix: f'{loader.__module__}.{loader.__qualname__}'
                     for prefix, loader in CheckpointLoader._schemes.items()},
            # torch < 2.4 has no allow-list: None
            safe_globals=sorted(str(item) for item in torch.serialization.get_safe_globals())
            if hasattr(torch.serialization, 'get_safe_globals') else None,
            model_names=sorted(hub.ModelHub._models_dict) if hub else [],
            torch_functions=[f'{f.__module__}.{f.__qualname__}' for f in (
                torch.load, torch.save, torch.hub.urlopen, torch.hub.load_state_dict_from_url,
                torch.hub.download_url_to_file, torch.onnx.export)],
            default_scope=str(DefaultScope.get_current_instance()),
            environ=dict(os.environ), sys_path=list(sys.path),
            warning_filters=[str(f) for f in warnings.filters],
            log_handlers=[str(h) for h in logging.getLogger().handlers],
            default_dtype=str(torch.get_default_dtype()), threads=torch.get_num_threads(),
            rng=[random.random(), float(np.random.rand()), float(torch.rand(1))],
        )

    for toolbox in ('mmpretrain', 'mmdet', 'mmseg'):  # a toolbox's own tool imported its registry
        importlib.import_module(f'{toolbox}.registry')
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    before = state()
    import mmxformer
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    after = state()
    print(json.dumps(dict(before=before, after=after)))
''')

#: The packages of which ``import mmxformer`` may import modules that a toolbox's registries had
#: not imported yet: its own, and the parts of mmcv (its layers) and torch that it builds on.
IMPORTED_PACKAGES = {'mmxformer', 'mmcv', 'torch'}


def snapshots():
    result = subprocess.run([sys.executable, '-c', SNAPSHOT],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.splitlines()[-1])
    return data['before'], data['after']


def added(before, after):
    return {key: value for key, value in after.items() if before.get(key) != value}


def test_import_changes_exactly_what_the_readme_lists():
    before, after = snapshots()
    ours = {  # by the registries' names (a toolbox's MMENGINE_X is mmengine's root X)
        'MODELS': {
            'XFormer', 'CrossFeatureAttention', 'MultiheadSelfAttention', 'IdentityMixer',
            'TokenBatchNorm'
        },
        'HOOKS': {'RandomStateHook'},
        'OPTIM_WRAPPERS': {'CPUBF16OptimWrapper'},
    }
    # 1. mmxformer's classes join mmengine's root registries and each toolbox's, under their own
    #    names; nothing of the host is replaced or removed
    #    (the modules mmxformer builds on register their own classes when first imported, as
    #    they would in any program that imports them: see 6.)
    imported = set(after['modules']) - set(before['modules'])
    for name, registry in after['registries'].items():
        new = added(before['registries'][name], registry)
        kind = name.split('.', 1)[1].replace('MMENGINE_', '')
        assert {key
                for key, cls in new.items()
                if cls.startswith('mmxformer.')} == ours.get(kind, set()), (name, new)
        assert all(registry.get(key) == cls for key, cls in before['registries'][name].items())
    # 2. mmxformer's registries are children of mmengine's roots (scope 'mmxformer')
    for name, children in after['children'].items():
        new = set(children) - set(before['children'][name])
        root = name.startswith('mmengine.') or '.MMENGINE_' in name
        expected = {'mmxformer'
                    } if root and name.split('.', 1)[1].replace('MMENGINE_', '') in ours else set()
        assert new == expected, (name, new)
    # 3. every prefix of mmengine's CheckpointLoader loads through mmxformer's safe loaders
    assert set(after['schemes']) == set(before['schemes'])
    assert all(
        loader.startswith('mmxformer.checkpoint.loaders.') for loader in after['schemes'].values())
    # 4. torch's weights_only allow-list gains mmengine's checkpoint types and numpy's (torch >=
    #    2.4; before, torch has none, and mmxformer's loaders use their own unpickler)
    if before['safe_globals'] is None:
        assert after['safe_globals'] is None
    else:
        new_globals = set(after['safe_globals']) - set(before['safe_globals'])
        assert new_globals and set(before['safe_globals']) <= set(after['safe_globals'])
        assert any('HistoryBuffer' in item for item in new_globals)
    # 5. mmpretrain's model names gain the classification metafile's
    new_names = set(after['model_names']) - set(before['model_names'])
    assert new_names and all(name.startswith('xformer') for name in new_names)
    # 6. modules: mmxformer's own, and those of the packages it builds on
    #    (which of torch's and mmcv's depends on their versions: on torch 2.1, none of torch's)
    packages = {name.split('.')[0] for name in imported}
    assert 'mmxformer' in packages and packages <= IMPORTED_PACKAGES, packages
    # and nothing else of the host's state
    for key in ('torch_functions', 'default_scope', 'environ', 'sys_path', 'warning_filters',
                'log_handlers', 'default_dtype', 'threads', 'rng'):
        assert after[key] == before[key], key
