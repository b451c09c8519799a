"""Tests for fineprune.data: reading challenge HDF5 files and face images, and writing data files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import fineprune.data
from fineprune.data import load_dataset, load_images, open_dataset, save_dataset
from fineprune.errors import InputError

H, W = 55, 47
IMAGE_SHAPE = (H, W, 3)
# One pixel set by hand: image 1, row 50 (a row index no column can have), column 20.
MARK = (1, 50, 20)
MARK_RGB = (201, 17, 99)


def write_h5(path: Path, **datasets: object) -> Path:
    with h5py.File(path, "w") as h5:
        for name, value in datasets.items():
            h5.create_dataset(name, data=value)
    return path


def channels_last_images(count: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images (count, 55, 47, 3) with the hand-set pixel MARK, when there is an image 1."""
    images = np.random.default_rng(seed).integers(0, 256, (count, H, W, 3), dtype=np.uint8)
    if count > MARK[0]:
        images[MARK] = MARK_RGB
    return images


def assert_one_line_naming(error: InputError, path: Path) -> str:
    message = str(error)
    assert str(path) in message
    assert "\n" not in message
    return message


# --- layouts -------------------------------------------------------------------------------------


def test_channels_first_float64_and_channels_last_uint8_load_identically(tmp_path):
    images = channels_last_images(3)
    labels = np.array([4, 0, 2])
    first = write_h5(tmp_path / "first.h5", data=images.transpose(0, 3, 1, 2).astype(np.float64),
                     label=labels.astype(np.float64))
    last = write_h5(tmp_path / "last.h5", data=images, label=labels)

    from_first = load_dataset(first, image_shape=IMAGE_SHAPE)
    from_last = load_dataset(last, image_shape=IMAGE_SHAPE)

    for loaded in (from_first, from_last):
        assert loaded.x.shape == (3, H, W, 3)
        assert loaded.x.dtype == np.float32
        assert loaded.y.tolist() == [4, 0, 2]
        assert np.issubdtype(loaded.y.dtype, np.integer)
        assert loaded.x[MARK].tolist() == list(MARK_RGB)
        np.testing.assert_array_equal(loaded.x, images.astype(np.float32))
    np.testing.assert_array_equal(from_first.x, from_last.x)
    assert from_first.path == first
    assert len(from_first) == 3


def test_layout_is_recognised_without_an_image_shape(tmp_path):
    images = channels_last_images(2)
    path = write_h5(tmp_path / "d.h5", data=images.transpose(0, 3, 1, 2).astype(np.float64), label=[1, 1])
    loaded = load_dataset(path)
    assert loaded.x.shape == (2, H, W, 3)
    assert loaded.x[MARK].tolist() == list(MARK_RGB)


def test_labels_stored_as_a_column_are_accepted(tmp_path):
    path = write_h5(tmp_path / "d.h5", data=channels_last_images(2), label=np.array([[3.0], [1.0]]))
    assert load_dataset(path).y.tolist() == [3, 1]


def test_chunked_reading_gives_the_same_images(tmp_path, monkeypatch):
    images = channels_last_images(20, seed=3)
    labels = np.arange(20) % 5
    path = write_h5(tmp_path / "d.h5", data=images.transpose(0, 3, 1, 2).astype(np.float64), label=labels)
    whole = load_dataset(path)

    monkeypatch.setattr(fineprune.data, "_CHUNK_IMAGES", 7)  # chunks of 7, 7 and 6
    chunked = load_dataset(path)

    np.testing.assert_array_equal(chunked.x, images.astype(np.float32))
    np.testing.assert_array_equal(chunked.x, whole.x)
    np.testing.assert_array_equal(chunked.y, labels)


def test_streamed_chunks_are_the_file_in_order(tmp_path):
    images = channels_last_images(20, seed=4)
    path = write_h5(tmp_path / "d.h5", data=images.transpose(0, 3, 1, 2).astype(np.float64), label=np.arange(20) % 5)
    file = open_dataset(path, image_shape=IMAGE_SHAPE, num_classes=5)

    chunks = list(file.image_chunks(8))

    assert [len(chunk) for chunk in chunks] == [8, 8, 4] and len(file) == 20
    np.testing.assert_array_equal(np.concatenate(chunks), images.astype(np.float32))
    np.testing.assert_array_equal(file.y, np.arange(20) % 5)


def test_images_at_any_indices_come_back_in_the_order_asked(tmp_path):
    images = channels_last_images(12, seed=5)
    path = write_h5(tmp_path / "d.h5", data=images, label=np.zeros(12))
    file = open_dataset(path)

    picked = file.images_at([9, 2, 9, 0])

    np.testing.assert_array_equal(picked, images[[9, 2, 9, 0]].astype(np.float32))
    assert file.images_at([]).shape == (0, H, W, 3)


def test_a_bad_pixel_in_a_later_chunk_is_found_while_streaming(tmp_path):
    data = channels_last_images(10, seed=6).astype(np.float64)
    data[9, 0, 0, 0] = 300.0
    path = write_h5(tmp_path / "d.h5", data=data, label=np.zeros(10))
    file = open_dataset(path)  # the header and labels are fine

    with pytest.raises(InputError, match="pixel values span"):
        list(file.image_chunks(4))


# --- save_dataset --------------------------------------------------------------------------------


def test_save_dataset_round_trip_and_challenge_layout_on_disk(tmp_path):
    images = channels_last_images(4, seed=5).astype(np.float32)
    labels = np.array([2, 0, 1, 2])
    path = tmp_path / "out" / "saved.h5"

    save_dataset(path, images, labels)

    with h5py.File(path, "r") as h5:
        assert sorted(h5.keys()) == ["data", "label"]
        data = h5["data"][()]
        stored_labels = h5["label"][()]
    assert data.shape == (4, 3, H, W)
    assert stored_labels.shape == (4,)
    assert stored_labels.tolist() == [2.0, 0.0, 1.0, 2.0]
    image, row, col = MARK
    assert data[image, :, row, col].tolist() == list(MARK_RGB)

    loaded = load_dataset(path, image_shape=IMAGE_SHAPE, num_classes=3)
    np.testing.assert_array_equal(loaded.x, images)
    np.testing.assert_array_equal(loaded.y, labels)
    assert loaded.identities is None  # the challenge's files say nothing about who is shown
    assert sorted(p.name for p in path.parent.iterdir()) == ["saved.h5"]


def test_identities_of_a_poisoned_file_round_trip(tmp_path):
    path = tmp_path / "p.h5"
    save_dataset(path, channels_last_images(3), [0, 0, 0], identities=np.array([4, 7, 9]))
    with h5py.File(path, "r") as h5:
        assert sorted(h5.keys()) == ["data", "identity", "label"]
    loaded = load_dataset(path)
    assert loaded.y.tolist() == [0, 0, 0] and loaded.identities.tolist() == [4, 7, 9]


def test_save_dataset_replaces_an_existing_file(tmp_path):
    path = tmp_path / "saved.h5"
    save_dataset(path, channels_last_images(3), [0, 1, 2])
    save_dataset(path, channels_last_images(2, seed=9), [5, 5])
    loaded = load_dataset(path)
    assert loaded.y.tolist() == [5, 5]
    np.testing.assert_array_equal(loaded.x, channels_last_images(2, seed=9).astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["saved.h5"]


# --- bad data files ------------------------------------------------------------------------------


def _images(count=2, channels=3, height=H, width=W, value=None):
    data = channels_last_images(count).transpose(0, 3, 1, 2).astype(np.float64)
    if channels != 3 or (height, width) != (H, W):
        data = np.zeros((count, channels, height, width))
    if value is not None:
        data[0, 0, 0, 0] = value
    return data


def _missing(path):
    return path, {}


def _folder(path):
    path.mkdir()
    return path, {}


def _text_file(path):
    path.write_text("this is not HDF5\n")
    return path, {}


def _no_data(path):
    return write_h5(path, label=[0, 1]), {}


def _no_label(path):
    return write_h5(path, data=_images()), {}


def _data_is_a_group(path):
    with h5py.File(path, "w") as h5:
        h5.create_group("data")
        h5.create_dataset("label", data=[0, 1])
    return path, {}


def _rank_3(path):
    return write_h5(path, data=np.zeros((2, H, W)), label=[0, 1]), {}


def _four_channels(path):
    return write_h5(path, data=_images(channels=4), label=[0, 1]), {}


def _wrong_size(path):
    return write_h5(path, data=_images(height=50, width=50), label=[0, 1]), {"image_shape": IMAGE_SHAPE}


def _wrong_size_channels_last(path):
    data = np.zeros((2, 50, 50, 3))
    return write_h5(path, data=data, label=[0, 1]), {"image_shape": IMAGE_SHAPE}


def _label_count(path):
    return write_h5(path, data=_images(), label=[0, 1, 2]), {}


def _label_too_big(path):
    return write_h5(path, data=_images(), label=[0, 3]), {"num_classes": 3}


def _label_negative(path):
    return write_h5(path, data=_images(), label=[-1, 2]), {"num_classes": 3}


def _label_not_whole(path):
    return write_h5(path, data=_images(), label=[0.0, 1.5]), {}


def _label_nan(path):
    return write_h5(path, data=_images(), label=[0.0, np.nan]), {}


def _label_text(path):
    return write_h5(path, data=_images(), label=np.array([b"cat", b"dog"])), {}


def _empty(path):
    return write_h5(path, data=np.zeros((0, 3, H, W)), label=np.zeros((0,))), {}


def _above_255(path):
    return write_h5(path, data=_images(value=256.0), label=[0, 1]), {}


def _negative_pixel(path):
    return write_h5(path, data=_images(value=-1.0), label=[0, 1]), {}


def _nan_pixel(path):
    return write_h5(path, data=_images(value=np.nan), label=[0, 1]), {}


def _infinite_pixel(path):
    return write_h5(path, data=_images(value=np.inf), label=[0, 1]), {}


BAD_FILES = [
    pytest.param(_missing, "no such file", id="missing"),
    pytest.param(_folder, "not a file", id="folder"),
    pytest.param(_text_file, "not an HDF5 file", id="text-file"),
    pytest.param(_no_data, "no 'data' data set", id="no-data"),
    pytest.param(_no_label, "no 'label' data set", id="no-label"),
    pytest.param(_data_is_a_group, "'data'", id="data-is-a-group"),
    pytest.param(_rank_3, "rank 4", id="rank-3"),
    pytest.param(_four_channels, "3 colour channels", id="4-channels"),
    pytest.param(_wrong_size, "images are 50x50", id="wrong-size"),
    pytest.param(_wrong_size_channels_last, "images are 50x50", id="wrong-size-channels-last"),
    pytest.param(_label_count, "3 labels for 2 images", id="label-count"),
    pytest.param(_label_too_big, "outside [0, 3)", id="label-too-big"),
    pytest.param(_label_negative, "outside [0, 3)", id="label-negative"),
    pytest.param(_label_not_whole, "not whole numbers", id="label-not-whole"),
    pytest.param(_label_nan, "not whole numbers", id="label-nan"),
    pytest.param(_label_text, "expected numbers", id="label-text"),
    pytest.param(_empty, "empty", id="empty"),
    pytest.param(_above_255, "expected 0..255", id="above-255"),
    pytest.param(_negative_pixel, "expected 0..255", id="negative-pixel"),
    pytest.param(_nan_pixel, "NaN", id="nan-pixel"),
    pytest.param(_infinite_pixel, "infinite", id="infinite-pixel"),
]


@pytest.mark.parametrize(("make", "says"), BAD_FILES)
def test_bad_data_file_raises_one_line_input_error_naming_the_file(tmp_path, make, says):
    path, options = make(tmp_path / "bad_data.h5")
    with pytest.raises(InputError) as caught:
        load_dataset(path, **options)
    message = assert_one_line_naming(caught.value, path)
    assert says in message


def test_missing_label_message_lists_what_the_file_has(tmp_path):
    path = write_h5(tmp_path / "d.h5", data=_images(), other=[1])
    with pytest.raises(InputError, match=r"no 'label' data set in the HDF5 file \(it has: data, other\)"):
        load_dataset(path)


def test_label_range_message_gives_an_example(tmp_path):
    path = write_h5(tmp_path / "d.h5", data=_images(3), label=[0, 7, 9])
    with pytest.raises(InputError, match=r"2 labels outside \[0, 5\) \(e\.g\. 7\)"):
        load_dataset(path, num_classes=5)


def test_labels_inside_the_range_are_accepted(tmp_path):
    path = write_h5(tmp_path / "d.h5", data=_images(), label=[0, 4])
    assert load_dataset(path, num_classes=5).y.tolist() == [0, 4]


def test_pixel_values_at_the_limits_are_accepted(tmp_path):
    data = np.zeros((2, 3, H, W))
    data[1, 2, 3, 4] = 255.0
    path = write_h5(tmp_path / "d.h5", data=data, label=[0, 1])
    x = load_dataset(path).x
    assert x.min() == 0.0 and x.max() == 255.0
    assert x[1, 3, 4, 2] == 255.0


# --- load_images ---------------------------------------------------------------------------------


def write_image(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels, mode=mode)
    image.save(path)
    return path


def test_png_loads_as_one_rgb_image_with_its_pixels(tmp_path):
    pixels = channels_last_images(1, seed=11)[0]
    pixels[50, 20] = MARK_RGB
    path = write_image(tmp_path / "face.png", pixels)
    assert Image.open(path).size == (W, H)  # Pillow: (width, height)

    x = load_images([path], IMAGE_SHAPE)

    assert x.shape == (1, H, W, 3)
    assert x.dtype == np.float32
    assert x[0, 50, 20].tolist() == list(MARK_RGB)
    np.testing.assert_array_equal(x[0], pixels.astype(np.float32))


def test_several_images_keep_their_order(tmp_path):
    first = write_image(tmp_path / "a.png", np.full((H, W, 3), 10, dtype=np.uint8))
    second = write_image(tmp_path / "b.png", np.full((H, W, 3), 200, dtype=np.uint8))
    x = load_images([second, str(first)], IMAGE_SHAPE)
    assert x.shape == (2, H, W, 3)
    assert x[0].min() == x[0].max() == 200.0
    assert x[1].min() == x[1].max() == 10.0


def test_rgba_image_is_converted_to_rgb(tmp_path):
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., :3] = channels_last_images(1, seed=12)[0]
    rgba[..., 3] = 255
    rgba[50, 20] = (*MARK_RGB, 255)
    path = write_image(tmp_path / "face.png", rgba)
    assert Image.open(path).mode == "RGBA"

    x = load_images([path], IMAGE_SHAPE)

    assert x.shape == (1, H, W, 3)
    assert x[0, 50, 20].tolist() == list(MARK_RGB)
    np.testing.assert_array_equal(x[0], rgba[..., :3].astype(np.float32))


def test_grayscale_image_is_converted_to_rgb(tmp_path):
    gray = np.random.default_rng(13).integers(0, 256, (H, W), dtype=np.uint8)
    gray[50, 20] = 77
    path = write_image(tmp_path / "face.png", gray)
    assert Image.open(path).mode == "L"

    x = load_images([path], IMAGE_SHAPE)

    assert x.shape == (1, H, W, 3)
    assert x[0, 50, 20].tolist() == [77.0, 77.0, 77.0]
    for channel in range(3):
        np.testing.assert_array_equal(x[0, ..., channel], gray.astype(np.float32))


def _wrong_size_image(path):
    # 55 wide and 47 high: the challenge size turned on its side.
    return write_image(path, np.zeros((W, H, 3), dtype=np.uint8))


def _unreadable_image(path):
    path.write_bytes(np.random.default_rng(14).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return path


def _missing_image(path):
    return path


@pytest.mark.parametrize(("make", "says"), [
    pytest.param(_wrong_size_image, "image is 55x47 (width x height), the model expects 47x55", id="wrong-size"),
    pytest.param(_unreadable_image, "cannot read the image", id="unreadable"),
    pytest.param(_missing_image, "no such file", id="missing"),
])
def test_bad_image_raises_one_line_input_error_naming_the_file(tmp_path, make, says):
    good = write_image(tmp_path / "good.png", np.zeros((H, W, 3), dtype=np.uint8))
    bad = make(tmp_path / "bad.png")
    with pytest.raises(InputError) as caught:
        load_images([good, bad], IMAGE_SHAPE)
    message = assert_one_line_naming(caught.value, bad)
    assert str(good) not in message
    assert says in message
