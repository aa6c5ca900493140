# mmdeploy 1.3.1 deploy config, ONNX Runtime backend, static input shape: the keys of mmdeploy's
# configs/_base_/onnx_config.py and configs/_base_/backends/onnxruntime.py
# (https://github.com/open-mmlab/mmdeploy, v1.3.1, Apache-2.0), copied because the mmdeploy
# package on PyPI does not ship its configs. One change: the opset.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    # mmdeploy's default is 11. XFormer's graph needs 13 at least: the XF blocks unfold patches
    # with Tensor.unflatten, which PyTorch exports from opset 13 on (as a Reshape whose shape is
    # an input). 17 is the opset of tools/deployment/export_onnx.py.
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    # Runs mmdeploy's graph optimisation passes where its torchscript extension is built; the
    # pip package has none, and mmdeploy warns and exports without them.
    optimize=True)
backend_config = dict(type='onnxruntime')
