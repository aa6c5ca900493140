"""The public API (what ``mmxformer``, ``mmxformer.models``, ``mmxformer.deployment`` and
``mmxformer.apis`` export) carries type hints, as mmdet's plugin checklist asks."""
import importlib
import inspect

PUBLIC_MODULES = ('mmxformer', 'mmxformer.models', 'mmxformer.deployment', 'mmxformer.apis')


def public_callables():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                if issubclass(obj, BaseException):
                    continue
                # the constructor and the public methods the class defines itself
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member) and (attr == '__init__'
                                                       or not attr.startswith('_')):
                        yield f'{module_name}.{name}.{attr}', member
            elif inspect.isfunction(obj):
                yield f'{module_name}.{name}', obj


def missing_hints(function):
    signature = inspect.signature(function)
    missing = [
        p.name for p in signature.parameters.values()
        if p.name not in ('self', 'cls') and p.annotation is inspect.Parameter.empty
    ]
    if function.__name__ != '__init__' and signature.return_annotation is inspect.Signature.empty:
        missing.append('return')
    return missing


def test_every_public_callable_has_type_hints():
    unhinted = {
        name: missing
        for name, function in public_callables() if (missing := missing_hints(function))
    }
    assert not unhinted, f'public callables without type hints: {unhinted}'


def test_a_callable_without_hints_is_found():

    def f(a, b: int):
        return a

    assert missing_hints(f) == ['a', 'return']
