"""Running mmdeploy 1.3.1's conversion on torch >= 2.9, without patching the installed mmdeploy.

mmdeploy exports through ``torch.onnx.export(model, args, path, opset_version=..., ...)`` and
relies on that call being PyTorch's TorchScript-based exporter: its rewriters (the model's
``forward`` for deployment, the symbolic functions, the NMS of a detector) patch what that
exporter traces. Since torch 2.9, ``torch.onnx.export`` defaults to ``dynamo=True``, the
torch.export-based exporter, which needs the onnxscript package (without it the export fails with
``No module named 'onnxscript'``) and does not use the symbolic functions mmdeploy registers;
mmdeploy does not pass ``dynamo``. :func:`torchscript_onnx_export` makes
``dynamo=False`` the default again for as long as mmdeploy converts.
"""
import contextlib
import functools

import torch


@contextlib.contextmanager
def torchscript_onnx_export():
    """Make ``torch.onnx.export`` default to ``dynamo=False`` inside the ``with`` block.

    A call that passes ``dynamo`` itself keeps its choice. The original function is put back
    when the block ends, also when it raises. The replacement is made in this process only: run
    mmdeploy's pipeline functions in the same process (mmdeploy's ``tools/deploy.py`` starts
    them in new processes, which would not see it).

    Example:
        >>> from mmdeploy.apis import torch2onnx
        >>> with torchscript_onnx_export():
        ...     torch2onnx(img, work_dir, 'end2end.onnx', deploy_cfg, model_cfg, ckpt, 'cpu')

    Yields:
        None
    """
    original = torch.onnx.export

    @functools.wraps(original)
    def export(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return original(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original
