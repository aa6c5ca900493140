"""Scenes composited from scikit-learn's real handwritten digits, shared by the three writers.

The source is :func:`sklearn.datasets.load_digits` (1797 8x8 grey images with 16 levels, shipped
inside scikit-learn: nothing is downloaded). It is split once, by class and with a fixed seed, into
training and held-out bitmaps, so that validation and test images never show a bitmap seen in
training. A scene is a background (colour gradient, low-frequency noise, fine grain) with digits
upscaled smoothly, coloured against their background and pasted where their ink does not touch
another digit's.
"""
import functools
from dataclasses import dataclass

import cv2
import numpy as np

DIGIT_CLASSES = tuple('0123456789')
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0
INK_THRESHOLD = 0.5  # coverage from which a pixel is the digit's ink (boxes, segmentation)
MIN_CONTRAST = 90  # least luminance gap between a digit's colour and the background under it


@dataclass(frozen=True)
class DigitSources:
    """The 8x8 source bitmaps (float in [0, 1]) and their classes, split once.

    Attributes:
        train_images (np.ndarray): (N, 8, 8) bitmaps for training sets.
        train_labels (np.ndarray): (N,) classes 0-9.
        held_out_images (np.ndarray): (M, 8, 8) bitmaps for validation and test sets only.
        held_out_labels (np.ndarray): (M,) classes 0-9.
    """
    train_images: np.ndarray
    train_labels: np.ndarray
    held_out_images: np.ndarray
    held_out_labels: np.ndarray

    def pool(self, held_out):
        """``(images, labels)`` of the held-out part if ``held_out`` else of the training part."""
        if held_out:
            return self.held_out_images, self.held_out_labels
        return self.train_images, self.train_labels


@dataclass(frozen=True)
class Scene:
    """A composited image and where its digits are.

    Attributes:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        labels (np.ndarray): (K,) digit classes 0-9.
        boxes (np.ndarray): (K, 4) int ``x0, y0, x1, y1`` (exclusive) of each digit's ink.
        coverage (np.ndarray): (H, W) float32 in [0, 1]: how much of each pixel is a digit.
        instance_map (np.ndarray): (H, W) int16: the digit covering each pixel most, -1 for none.
    """
    image: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    coverage: np.ndarray
    instance_map: np.ndarray


@functools.lru_cache(maxsize=4)
def load_digit_sources(held_out_fraction=HELD_OUT_FRACTION, split_seed=SPLIT_SEED):
    """Load scikit-learn's digits and split them by class into training and held-out bitmaps.

    Args:
        held_out_fraction (float): Share of each class held out. Defaults to 0.2 (360 bitmaps).
        split_seed (int): Seed of the split. Keep the default: every set made with the same
            split holds out the same bitmaps, whatever seed composes its scenes.

    Returns:
        DigitSources: the two parts, read-only (they are cached).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    train_x, held_x, train_y, held_y = train_test_split(
        images,
        digits.target,
        test_size=held_out_fraction,
        stratify=digits.target,
        random_state=split_seed)
    for array in (train_x, train_y, held_x, held_y):
        array.flags.writeable = False
    return DigitSources(train_x, train_y, held_x, held_y)


def _pair(name, value):
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f'{name} must be an int or a pair of ints, not {value!r}')
    return tuple(int(v) for v in pair)


def scene_args(image_size, num_digits, digit_size):
    """Check the size arguments of :func:`compose_scene` and return them as pairs of ints.

    Raises:
        ValueError: naming the argument that is out of range and its bounds.
    """
    height, width = image_size = _pair('image_size', image_size)
    num_digits, digit_size = _pair('num_digits', num_digits), _pair('digit_size', digit_size)
    if min(image_size) < 8:
        raise ValueError(f'image_size {image_size} must be at least 8 pixels on each side')
    if not 1 <= num_digits[0] <= num_digits[1]:
        raise ValueError(f'num_digits {num_digits} must be (least, most) with 1 <= least <= most')
    if not 8 <= digit_size[0] <= digit_size[1] <= min(height, width):
        raise ValueError(f'digit_size {digit_size} must be (least, most) within [8, '
                         f'{min(height, width)}]: 8 source pixels up to the shorter side of '
                         f'image_size {image_size}')
    return image_size, num_digits, digit_size


def count_arg(name, value, least=1):
    """``value`` as an int if it is one and at least ``least``, else a ValueError naming the
    argument ``name``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
        raise ValueError(f'{name} must be an int of at least {least}, not {value!r}')
    return int(value)


def scene_set_args(num_train, num_val, image_size, num_digits, digit_size, seed):
    """The checked arguments of a detection or segmentation set, as its manifest records them.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    image_size, num_digits, digit_size = scene_args(image_size, num_digits, digit_size)
    return dict(
        num_train=count_arg('num_train', num_train),
        num_val=count_arg('num_val', num_val),
        image_size=image_size,
        num_digits=num_digits,
        digit_size=digit_size,
        seed=count_arg('seed', seed, least=0))


def image_rng(seed, stream, index):
    """The generator of one image: independent of every other image, the same on every run."""
    return np.random.default_rng([seed, stream, index])


def render_digit(rng, bitmap, size):
    """Upscale an 8x8 bitmap smoothly to a digit ``size`` pixels tall, its width varied a little.

    Args:
        rng (np.random.Generator): Source of the aspect ratio.
        bitmap (np.ndarray): (8, 8) float in [0, 1].
        size (int): Height in pixels of the 8x8 cell.

    Returns:
        np.ndarray: (h, w) float32 coverage in [0, 1], with a transparent margin of one source
        pixel around the cell so that strokes at the edge fade out smoothly.
    """
    padded = np.pad(bitmap, 1)
    height = round(size * 10 / 8)
    width = round(height * rng.uniform(0.8, 1.1))
    coverage = cv2.resize(padded, (width, height), interpolation=cv2.INTER_CUBIC)
    # Stretch the mid-tones so strokes are crisp but stay anti-aliased.
    return np.clip((coverage - 0.2) / 0.6, 0, 1).astype(np.float32)


def random_background(rng, height, width):
    """A (height, width, 3) float32 background: a colour gradient, blobs of low-frequency colour
    noise and a fine-grained texture."""
    start, end = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    image = start + ramp[..., None] * (end - start)
    cells = rng.integers(2, 7, size=2)
    blobs = rng.normal(size=(*cells, 3)).astype(np.float32)
    image += rng.uniform(10, 40) * cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = rng.normal(size=(height // 2 + 1, width // 2 + 1, 1)).astype(np.float32)
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR)
    image += rng.uniform(0, 12) * texture[..., None]
    return np.clip(image, 0, 255).astype(np.float32)


def contrasting_colour(rng, background_rgb):
    """A random colour whose luminance differs from ``background_rgb``'s by ``MIN_CONTRAST``."""
    weights = np.array([0.299, 0.587, 0.114])
    target = float(background_rgb @ weights)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if abs(float(colour @ weights) - target) >= MIN_CONTRAST:
            return colour
    return np.zeros(3) if target > 127 else np.full(3, 255.0)


def _ink_box(coverage):
    """``x0, y0, x1, y1`` (exclusive) of the pixels of ``coverage`` that are ink."""
    rows = np.flatnonzero((coverage >= INK_THRESHOLD).any(1))
    cols = np.flatnonzero((coverage >= INK_THRESHOLD).any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])


def _fit(patch, height, width):
    """Crop ``patch`` around its ink if that is larger than the image; return it and its ink box."""
    ink = _ink_box(patch)
    if ink[2] - ink[0] <= width and ink[3] - ink[1] <= height:
        return patch, ink
    y0 = max(0, (ink[1] + ink[3] - height) // 2)
    x0 = max(0, (ink[0] + ink[2] - width) // 2)
    patch = patch[y0:y0 + height, x0:x0 + width]
    return patch, _ink_box(patch)


def _overlaps(box, boxes, margin):
    return any(box[0] < b[2] + margin and b[0] < box[2] + margin and box[1] < b[3] +
               margin and b[1] < box[3] + margin for b in boxes)


def compose_scene(rng,
                  images,
                  labels,
                  image_size,
                  num_digits=(1, 4),
                  digit_size=(28, 64),
                  margin=2,
                  max_tries=50):
    """Composite randomly drawn digits onto a random background.

    Each digit is drawn from ``images`` and placed uniformly where its ink lies inside the image,
    at least ``margin`` pixels from every other digit's ink; a digit that finds no such place in
    ``max_tries`` is left out (the first always fits).

    Args:
        rng (np.random.Generator): The only source of randomness.
        images (np.ndarray): (N, 8, 8) bitmaps to draw from.
        labels (np.ndarray): (N,) their classes.
        image_size (int | tuple[int, int]): ``(height, width)``; an int for a square.
        num_digits (int | tuple[int, int]): Least and most digits (inclusive). Defaults to
            (1, 4).
        digit_size (int | tuple[int, int]): Least and most height of a digit's 8x8 cell in
            pixels. Defaults to (28, 64).
        margin (int): Least gap between two digits' ink. Defaults to 2.
        max_tries (int): Positions tried per digit. Defaults to 50.

    Returns:
        Scene: the image and its digits.
    """
    (height, width), num_digits, digit_size = scene_args(image_size, num_digits, digit_size)
    canvas = random_background(rng, height, width)
    coverage = np.zeros((height, width), np.float32)
    instance_map = np.full((height, width), -1, np.int16)
    kept_labels, boxes = [], []
    for _ in range(rng.integers(num_digits[0], num_digits[1] + 1)):
        index = rng.integers(len(images))
        patch = render_digit(rng, images[index],
                             int(rng.integers(digit_size[0], digit_size[1] + 1)))
        patch, ink = _fit(patch, height, width)
        for _ in range(max_tries):
            x0 = int(rng.integers(0, width - (ink[2] - ink[0]) + 1)) - ink[0]
            y0 = int(rng.integers(0, height - (ink[3] - ink[1]) + 1)) - ink[1]
            box = ink + [x0, y0, x0, y0]
            if not _overlaps(box, boxes, margin):
                break
        else:
            continue
        _paste(rng, canvas, coverage, instance_map, patch, x0, y0, len(boxes))
        kept_labels.append(int(labels[index]))
        boxes.append(box)
    grain = rng.normal(scale=rng.uniform(0, 6), size=canvas.shape)
    image = np.clip(canvas + grain, 0, 255).round().astype(np.uint8)
    return Scene(image, np.array(kept_labels, np.int64),
                 np.array(boxes, np.int64).reshape(-1, 4), coverage, instance_map)


def _paste(rng, canvas, coverage, instance_map, patch, x0, y0, instance):
    """Blend ``patch`` in a contrasting colour into ``canvas`` at ``(x0, y0)``, clipped to it."""
    height, width = coverage.shape
    px0, py0 = max(0, -x0), max(0, -y0)
    px1 = min(patch.shape[1], width - x0)
    py1 = min(patch.shape[0], height - y0)
    alpha = patch[py0:py1, px0:px1]
    region = (slice(y0 + py0, y0 + py1), slice(x0 + px0, x0 + px1))
    under = canvas[region]
    colour = contrasting_colour(rng, under[alpha >= INK_THRESHOLD].mean(0))
    canvas[region] = under * (1 - alpha[..., None]) + colour * alpha[..., None]
    on_top = alpha > coverage[region]
    instance_map[region][on_top] = instance
    coverage[region] = np.maximum(coverage[region], alpha)


def save_rgb(path, image, jpeg_quality=95):
    """Write an RGB uint8 image; the format follows the suffix of ``path``."""
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if str(path).endswith('.jpg') else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]), params):
        raise OSError(f'could not write image {path}')
