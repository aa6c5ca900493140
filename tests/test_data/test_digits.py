import numpy as np
import pytest

from mmxformer.data.digits.scenes import (INK_THRESHOLD, compose_scene, image_rng,
                                          load_digit_sources, scene_args)


def test_sources_split_by_class_without_shared_bitmaps():
    sources = load_digit_sources()
    assert len(sources.train_images) + len(sources.held_out_images) == 1797
    assert len(sources.held_out_images) == 360
    # Stratified: every class is held out in proportion (about 36 of about 180).
    assert np.all(np.abs(np.bincount(sources.held_out_labels) - 36) <= 1)
    train = {image.tobytes() for image in sources.train_images}
    assert not any(image.tobytes() in train for image in sources.held_out_images)
    assert sources.train_images.min() == 0 and sources.train_images.max() == 1


def test_sources_are_read_only():
    with pytest.raises(ValueError):
        load_digit_sources().train_images[0, 0, 0] = 1


def _scene(seed, **kwargs):
    sources = load_digit_sources()
    kwargs = dict(image_size=(96, 128), num_digits=(2, 4), digit_size=(20, 40), **kwargs)
    return compose_scene(
        image_rng(seed, 0, 0), sources.train_images, sources.train_labels, **kwargs)


def test_scene_is_deterministic_and_varies_with_seed():
    first, again, other = _scene(0), _scene(0), _scene(1)
    assert first.image.shape == (96, 128, 3) and first.image.dtype == np.uint8
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.boxes, again.boxes)
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize('seed', range(5))
def test_boxes_are_tight_around_separate_ink(seed):
    scene = _scene(seed)
    assert 1 <= len(scene.labels) <= 4 and len(scene.boxes) == len(scene.labels)
    ink = scene.coverage >= INK_THRESHOLD
    for index, (x0, y0, x1, y1) in enumerate(scene.boxes):
        mine = ink & (scene.instance_map == index)
        ys, xs = np.nonzero(mine)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    # Ink outside every box: none (the digits do not overlap).
    inside = np.zeros_like(ink)
    for x0, y0, x1, y1 in scene.boxes:
        inside[y0:y1, x0:x1] = True
    assert not (ink & ~inside).any()


def test_digit_colour_contrasts_with_background():
    scene = _scene(3)
    ink = scene.coverage >= 0.9
    background = scene.coverage == 0
    lum = scene.image.astype(float) @ [0.299, 0.587, 0.114]
    for index in range(len(scene.labels)):
        mine = ink & (scene.instance_map == index)
        x0, y0, x1, y1 = scene.boxes[index]
        around = np.zeros_like(background)
        around[y0:y1, x0:x1] = True
        assert abs(lum[mine].mean() - lum[around & background].mean()) > 40


@pytest.mark.parametrize('seed', range(4))
def test_digit_as_large_as_the_image_fits(seed):
    # A 64-pixel digit is up to 70 pixels wide: it is cropped to the image around its ink.
    sources = load_digit_sources()
    scene = compose_scene(
        image_rng(seed, 0, 0),
        sources.train_images,
        sources.train_labels,
        image_size=64,
        num_digits=1,
        digit_size=64)
    x0, y0, x1, y1 = scene.boxes[0]
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64


@pytest.mark.parametrize('kwargs, message', [
    (dict(image_size=(4, 64)), 'image_size'),
    (dict(num_digits=(3, 2)), 'num_digits'),
    (dict(num_digits=0), 'num_digits'),
    (dict(digit_size=(6, 20)), 'digit_size'),
    (dict(digit_size=(20, 200)), 'digit_size'),
    (dict(image_size=(64, 64, 3)), 'image_size'),
])
def test_scene_args_reject_bad_sizes(kwargs, message):
    args = dict(image_size=64, num_digits=(1, 2), digit_size=(20, 40))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        scene_args(**args)
