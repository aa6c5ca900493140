"""mmseg's visualizer, drawing on images whatever their memory layout.

mmseg 1.2.2's ``tools/analysis_tools/browse_dataset.py`` hands the visualizer a channel-flipped
view of the packed image tensor, whose strides are not C-ordered. ``SegLocalVisualizer`` draws
the class labels with OpenCV into ``np.zeros_like(image)``, which keeps that layout, and
OpenCV 4 refuses to draw into it ("Layout of the output array img is incompatible with
cv::Mat"), whichever the data set. The segmentation configs use this class instead
(``custom_imports`` imports this module).
"""
import numpy as np
from mmseg.registry import VISUALIZERS
from mmseg.visualization import SegLocalVisualizer


@VISUALIZERS.register_module()
class ContiguousSegLocalVisualizer(SegLocalVisualizer):
    """mmseg's ``SegLocalVisualizer``, with the image made C-contiguous before drawing on it."""

    def _draw_sem_seg(self, image: np.ndarray, *args, **kwargs) -> np.ndarray:
        return super()._draw_sem_seg(np.ascontiguousarray(image), *args, **kwargs)
