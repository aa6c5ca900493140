"""int8 ONNX: the checked float32 export (:mod:`.onnx`), quantized by onnxruntime on images of
the config's training set (:mod:`~mmxformer.deployment.quantize.onnxruntime`)."""
import os
import os.path as osp
import tempfile
from typing import Optional, Tuple

from mmengine.config import Config

from ...utils.fileio import naming_output
from ..preflight import check_disk_space, check_memory, check_output_is_no_input, weight_bytes
from ..quantize.calibration import agreement, calibration_inputs
from ..quantize.onnxruntime import quantize_onnx
from .network import build_network
from .onnx import DEFAULT_OPSET, export_onnx


def export_onnx_int8(cfg: Config,
                     out: str,
                     shape: Tuple[int, int],
                     checkpoint: Optional[str] = None,
                     calib_images: int = 32,
                     opset: Optional[int] = None) -> dict:
    """Export a config's model to ONNX (checked by :func:`~.onnx.export_onnx`), quantize it to
    int8 QDQ on ``calib_images`` images of the config's training set, and write it to ``out``.
    The model is built, and its checkpoint read, once.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config.
        out (str): The int8 ONNX file to write; written only once both steps succeeded.
        shape (tuple[int, int]): Input height and width (static).
        checkpoint (str, optional): Weights to load. Defaults to None (initialised weights).
        calib_images (int): Calibration images. Defaults to 32.
        opset (int, optional): ONNX opset. Defaults to the ONNX export's.

    Returns:
        dict: ``fp32_bytes`` and ``bytes`` (file sizes), ``agreement`` (the int8 file against
        the fp32 model on the first ``calib_images`` test images, see
        :func:`~mmxformer.deployment.quantize.calibration.agreement`).

    Raises:
        ValueError: Before the export: the config has no training or test set, or fewer than
            ``calib_images`` images in one; :class:`~..preflight.ResourceError`: the input
            needs more memory than is free, or the disk of ``out`` too little space.
        OSError: Writing failed (the disk filled up meanwhile); it names ``out``, and nothing
            is left of the files.
    """
    import onnxruntime as ort
    check_output_is_no_input(out, {'the checkpoint': checkpoint})
    network = build_network(cfg, checkpoint)
    check_memory(network, (1, 3, *shape))
    # the float32 file, its optimized copy, onnxruntime's copy of that with the shapes inferred,
    # and the int8 file (int8 weights: a quarter of the float ones), all in the directory of out
    check_disk_space(
        out,
        weight_bytes(network) * 13 // 4,
        "the float32 export, its optimized copy, onnxruntime's copy of that and "
        'the int8 file')
    preprocessor = network.model.data_preprocessor
    calibration = calibration_inputs(cfg, preprocessor, calib_images, shape, 'train')
    held_out = calibration_inputs(cfg, preprocessor, calib_images, shape, 'test')
    directory = osp.dirname(osp.abspath(out))
    os.makedirs(directory, exist_ok=True)
    # everything written on the way (onnxruntime writes its copies next to the float32 file) in
    # one temporary directory, removed whatever happens
    with naming_output(out), tempfile.TemporaryDirectory(
            dir=directory, prefix=f'.{osp.basename(out)}.') as scratch:
        fp32, tmp = osp.join(scratch, 'fp32.onnx'), osp.join(scratch, 'int8.onnx')
        export_onnx(cfg, fp32, shape, checkpoint, opset=opset or DEFAULT_OPSET, network=network)
        quantize_onnx(fp32, tmp, calibration)
        session = ort.InferenceSession(tmp, providers=['CPUExecutionProvider'])
        record = dict(fp32_bytes=osp.getsize(fp32), bytes=osp.getsize(tmp))
        record['agreement'] = agreement(network, lambda x: session.run(None, {'input': x.numpy()}),
                                        held_out)
        os.replace(tmp, out)
    return record
