"""Dataset discovery, splitting, decoding of odd files, preprocessing and augmentation."""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cnnkit.data import SkippedFilesWarning, decode_file, decode_images, decode_splits, load_dataset, scan_folder
from cnnkit.data.datasets import DecodedImages, TensorImageDataset
from cnnkit.data.transforms import (
    RandomAffineCrop,
    RandomShiftFlip,
    affine_crop,
    affine_crop_theta,
    center_crop_resize,
    resolve_augment,
    train_transform,
    training_store_size,
)
from cnnkit.errors import CnnkitError
from cnnkit.evaluate.dataset_views import augmented_variants
from cnnkit.models.config import Preprocessing
from tests.conftest import write_images, write_shapes_dataset


def _rgb(seed: int = 0, size: tuple[int, int] = (40, 50)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_flat_folder_gets_a_stratified_seeded_split(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "flat", per_class=20)
    first = scan_folder(root, seed=3)
    again = scan_folder(root, seed=3)
    other = scan_folder(root, seed=4)
    assert first.classes == ["disc", "square", "stripes"]
    assert (len(first.train), len(first.val), len(first.test)) == (42, 9, 9)
    assert first.val.class_counts(3) == [3, 3, 3]
    assert first.val.sources == again.val.sources
    assert first.val.sources != other.val.sources
    every = first.train.sources + first.val.sources + first.test.sources
    assert len(set(every)) == 60


def test_split_folders_accept_valid_and_carve_val_when_missing(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "split", per_class=10, layout="split")
    (root / "val").rename(root / "valid")
    dataset = scan_folder(root)
    assert dataset.layout == "split-folders"
    assert all("/valid/" in s for s in dataset.val.sources)
    assert all("/test/" in s for s in dataset.test.sources)
    import shutil

    shutil.rmtree(root / "valid")
    carved = scan_folder(root, val_split=0.2)
    assert carved.test is not None and len(carved.val) > 0
    assert set(carved.val.sources).isdisjoint(carved.train.sources)
    assert any("held out" in note for note in carved.notes)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "only").mkdir(parents=True), "at least 2 class folders"),
        (lambda root: [(root / c).mkdir(parents=True) for c in ("a", "b")], r"class 'a' \(.*/a\): empty"),
        (lambda root: [write_images(root / c, 1) for c in ("a", "b")], "cannot split"),
    ],
)
def test_unusable_dataset_gives_one_line_error(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "data"
    make(root)
    with pytest.raises(CnnkitError, match=message) as error:
        scan_folder(root)
    assert "\n" not in str(error.value)


def test_empty_val_folder_is_an_error(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "split", per_class=10, layout="split")
    for file in (root / "val").rglob("*.png"):
        file.unlink()
    with pytest.raises(CnnkitError, match=r"val split .* has no images"):
        scan_folder(root)


def test_builtin_digits_needs_no_download() -> None:
    dataset = load_dataset("digits")
    assert dataset.classes == [str(d) for d in range(10)]
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 1797
    decoded = decode_images(dataset.val, Preprocessing(input_size=28, channels=1, mean=(0.0,), std=(1.0,)))
    assert decoded.images.shape == (len(dataset.val), 1, 28, 28)
    assert decoded.images.max() > 200


def test_odd_modes_and_formats_decode_to_the_channels_the_model_takes(tmp_path: Path) -> None:
    pixels = _rgb()
    files = {
        "rgb.jpg": Image.fromarray(pixels),
        "cmyk.jpg": Image.fromarray(pixels).convert("CMYK"),
        "gray.png": Image.fromarray(pixels).convert("L"),
        "rgba.png": Image.fromarray(pixels).convert("RGBA"),
        "palette.png": Image.fromarray(pixels).convert("P"),
        "deep.png": Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257),
        "bitmap.bmp": Image.fromarray(pixels),
        "anim.gif": Image.fromarray(pixels),
        "modern.webp": Image.fromarray(pixels),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
        rgb, gray = decode_file(tmp_path / name, 3), decode_file(tmp_path / name, 1)
        assert rgb.shape == (3, 40, 50) and rgb.dtype == torch.uint8, name
        assert gray.shape == (1, 40, 50), name
    deep = decode_file(tmp_path / "deep.png", 1)[0].numpy()
    assert np.abs(deep.astype(int) - pixels[:, :, 0]).max() <= 1


def test_exif_orientation_is_respected(tmp_path: Path) -> None:
    image = Image.fromarray(_rgb(size=(20, 60)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert decode_file(tmp_path / "rotated.jpg").shape == (3, 60, 20)


def test_center_crop_uses_tensorflow_offsets() -> None:
    image = torch.arange(7 * 7, dtype=torch.uint8).view(1, 7, 7)
    cropped = center_crop_resize(image, size=4, crop_pct=4 / 7, interpolation="nearest")
    # (7 - 4 + 1) // 2 = 2: the crop starts at row/column 2 (torchvision's CenterCrop would start at 1 or 2).
    assert cropped[0, 0, 0].item() == 2 * 7 + 2


def write_dataset_with_bad_files(root: Path) -> tuple[list[str], int]:
    """Shapes data plus every kind of file a real folder holds; returns the bad names and odd-mode count.

    ``.DS_Store`` is hidden: left out silently (counted in the notes), not one of the bad files.
    """
    write_shapes_dataset(root, per_class=12, size=32)
    folder = root / "disc"
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    (folder / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(_rgb()).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "notes.png").write_text("this is not an image")
    Image.fromarray(_rgb(1)).convert("L").save(folder / "gray.png")
    Image.fromarray(_rgb(2)).convert("RGBA").save(folder / "alpha.png")
    Image.fromarray(_rgb(3)).convert("CMYK").save(folder / "print.jpg")
    return ["Thumbs.db", "empty.jpg", "truncated.jpg", "notes.png"], 3


def test_bad_files_are_skipped_with_one_warning_and_training_goes_on(tmp_path: Path) -> None:
    import cnnkit

    bad, odd = write_dataset_with_bad_files(tmp_path / "messy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = cnnkit.train(
            tmp_path / "messy",
            model="plain_cnn",
            epochs=1,
            image_size=32,
            val_split=0.2,
            test_split=0.0,
            augment="none",
            progress=False,
            out=tmp_path / "run",
        )
    skipped = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert len(skipped) == 1
    assert all(name in str(skipped[0].message) for name in bad)
    assert sorted(Path(p).name for p in run.facts.skipped_files) == sorted(bad)
    assert ".DS_Store" not in str(skipped[0].message)
    assert "left out 1 hidden file(s) or folder(s) (names starting with '.')" in run.facts.dataset_notes
    assert run.metrics["num_train"] + run.metrics["num_val"] == 36 + odd
    assert (run.path / "model.safetensors").is_file()


@pytest.mark.skipif(
    sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2, reason="worker processes need Linux and 2 cores"
)
def test_many_items_are_mapped_in_order_in_other_processes() -> None:
    from cnnkit.data.prepare import PROCESS_MAP_MIN_ITEMS, map_indices

    count = PROCESS_MAP_MIN_ITEMS + 7
    results = list(map_indices(lambda i: (i, os.getpid()), count))
    assert [i for i, _ in results] == list(range(count))
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.parametrize("cache", ["ram", "off"])
def test_worker_processes_decode_what_threads_decode(tmp_path: Path, monkeypatch, cache: str) -> None:
    """Large splits decode in forked processes: the same pixels, order, kept files and skip reasons as threads."""
    from cnnkit.data import prepare

    bad, _ = write_dataset_with_bad_files(tmp_path / "messy")
    dataset = load_dataset(tmp_path / "messy", val_split=0.1, test_split=0.0)
    preprocessing = Preprocessing(input_size=32)

    def decoded(min_items: int) -> list[DecodedImages]:
        monkeypatch.setattr(prepare, "PROCESS_MAP_MIN_ITEMS", min_items)
        return [decode_images(split, preprocessing, for_training=True, cache=cache, warn=False)
                for split in (dataset.train, dataset.val)]  # fmt: skip

    in_threads, in_processes = decoded(10**9), decoded(1)
    assert sorted(Path(p).name for split in in_threads for p in split.skipped) == sorted(bad)
    for threads, processes in zip(in_threads, in_processes, strict=True):
        assert processes.sources == threads.sources and processes.reasons == threads.reasons
        assert torch.equal(processes.labels, threads.labels)
        assert all(torch.equal(processes.images[i], threads.images[i]) for i in range(len(threads.sources)))


@pytest.mark.parametrize("cache", ["ram", "disk", "off", "shards"])
def test_decoding_shows_progress_per_split_in_a_log(tmp_path: Path, monkeypatch, capfd, cache: str) -> None:
    """Decoding a large dataset takes a while (MNIST: 13 s), so a log gets ``decoding train: done/total``.

    From shards, only val and test are decoded up front (train streams each epoch)."""
    monkeypatch.setenv("CNNKIT_PROGRESS_INTERVAL", "0")
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))
    for label in ("a", "b"):
        write_images(tmp_path / "data" / label, 12, size=(20, 20), seed=len(label) + ord(label))
    dataset = load_dataset(tmp_path / "data", val_split=0.25, test_split=0.25)
    from_shards = cache == "shards"
    if from_shards:
        from cnnkit.data.shards import shard

        shard(tmp_path / "data", tmp_path / "shards", val_split=0.25, test_split=0.25)
        dataset, cache = load_dataset(tmp_path / "shards"), "ram"
    decoded = decode_splits(dataset, Preprocessing(input_size=16), cache=cache, progress=True)
    lines = capfd.readouterr().err.splitlines()
    if from_shards:
        assert not any(line.startswith("decoding train") for line in lines), lines
    for split in ("val", "test") if from_shards else ("train", "val", "test"):
        count = len(getattr(decoded, split).labels)
        assert any(line.startswith(f"decoding {split}: {count}/{count} images, ") for line in lines), lines
    decode_splits(dataset, Preprocessing(input_size=16), cache=cache)
    assert "decoding" not in capfd.readouterr().err


def test_augmentation_presets() -> None:
    color = Preprocessing(input_size=32, crop_pct=0.875)
    assert resolve_augment("auto", color) == "standard"
    assert resolve_augment("auto", Preprocessing(input_size=28, channels=1, mean=(0.0,), std=(1.0,))) == "light"
    with pytest.raises(CnnkitError, match="--augment"):
        resolve_augment("heavy", color)
    store = training_store_size(color)
    image = torch.from_numpy(_rgb(size=(store, store))).permute(2, 0, 1).contiguous()
    torch.manual_seed(0)
    standard = train_transform(color, "standard")
    views = torch.stack([standard(image) for _ in range(4)])
    assert views.shape == (4, 3, 32, 32)
    assert (views[0] - views[1]).abs().mean() > 0.05
    plain = train_transform(color, "none")
    assert torch.equal(plain(image), plain(image))
    gray = Preprocessing(input_size=28, channels=1, mean=(0.0,), std=(1.0,))
    digit = torch.from_numpy(_rgb(size=(28, 28))[..., :1]).permute(2, 0, 1).contiguous()
    light = train_transform(gray, "light")(digit)
    assert light.shape == (1, 28, 28) and light.dtype == torch.float32 and 0 <= light.min() <= light.max() <= 1


def _centre(image: torch.Tensor, size: int) -> torch.Tensor:
    top = (image.shape[-1] - size + 1) // 2
    return image[..., top : top + size, top : top + size]


@pytest.mark.parametrize(("store", "size"), [(256, 224), (37, 32)])
def test_affine_crop_with_identity_parameters_is_the_centre_crop(store: int, size: int) -> None:
    image = torch.rand(3, store, store)
    still = RandomAffineCrop(store, size, degrees=0, shift=0, shear=0, zoom=0, flip=False)
    assert torch.allclose(still(image), _centre(image, size), atol=1e-5, rtol=0)
    as_uint8 = (image * 255).round().to(torch.uint8)
    out = still(as_uint8)
    assert out.dtype == torch.float32
    assert torch.allclose(out, _centre(as_uint8, size) / 255, atol=1e-5, rtol=0)
    flipped = affine_crop(image, affine_crop_theta(store, size, flip=True), size)
    assert torch.allclose(flipped, _centre(image, size).flip(-1), atol=1e-5, rtol=0)


def test_affine_crop_shifts_and_rotates_like_torchvision() -> None:
    image = torch.rand(3, 40, 40)
    crop = _centre(image, 32)
    moved = affine_crop(image, affine_crop_theta(40, 32, translate=(3, -2)), 32)
    assert torch.allclose(moved[:, :-2, 3:], crop[:, 2:, :-3], atol=1e-5, rtol=0)  # 3 right, 2 up
    turned = affine_crop(image, affine_crop_theta(40, 32, angle=90), 32)
    assert torch.allclose(turned, torch.rot90(crop, -1, dims=(-2, -1)), atol=1e-5, rtol=0)  # clockwise, as v2.affine
    wide = v2.functional.pad(image, 40, padding_mode="edge")  # what border sampling stands for
    reference = v2.functional.affine(wide, 23.0, [4, -3], 1.1, [-8.0, 0.0], v2.InterpolationMode.BILINEAR)
    ours = affine_crop(image, affine_crop_theta(40, 32, angle=23.0, translate=(4, -3), scale=1.1, shear=-8.0), 32)
    assert torch.allclose(ours, v2.functional.center_crop(reference, [32]), atol=1e-4, rtol=0)


def test_affine_crop_fills_uncovered_corners_with_the_edge_colour() -> None:
    image = torch.randint(1, 256, (3, 64, 64), dtype=torch.uint8)
    image[:, :4], image[:, -4:], image[:, :, :4], image[:, :, -4:] = 200, 200, 200, 200
    out = affine_crop(image, affine_crop_theta(64, 56, angle=45, scale=0.7), 56)
    assert out.min() > 0
    assert torch.allclose(out[:, [0, 0, -1, -1], [0, -1, 0, -1]], torch.tensor(200 / 255), atol=1e-6)


def test_a_batch_is_augmented_image_by_image() -> None:
    """One call on a batch gives every image its own draws: exactly what one call per image gives."""
    pp = Preprocessing(input_size=28, channels=1, mean=(0.0,), std=(1.0,))
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    augment = train_transform(pp, "light")
    torch.manual_seed(3)
    batch = augment(images)
    torch.manual_seed(3)
    assert torch.allclose(batch, torch.stack([augment(image) for image in images]), atol=1e-6)


@pytest.mark.parametrize("preset", ["standard", "light", "shift_flip"])
def test_copies_of_one_image_in_a_batch_get_different_views(preset: str) -> None:
    pp = Preprocessing(input_size=32, crop_pct=0.875)
    store = training_store_size(pp)
    image = torch.randint(0, 256, (1, 3, store, store), dtype=torch.uint8)
    torch.manual_seed(0)
    views = train_transform(pp, preset)(image.expand(6, -1, -1, -1))
    assert views.shape == (6, 3, 32, 32)
    assert all(not torch.equal(views[0], other) for other in views[1:])


def test_shift_flip_reflects_the_edges_like_reflect_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8)
    padded = torch.nn.functional.pad(image[None], (2, 2, 2, 2), mode="reflect")[0]
    monkeypatch.setattr(torch, "randint", lambda low, high, size: torch.zeros(size, dtype=torch.long))
    monkeypatch.setattr(torch, "rand", lambda *size: torch.ones(size))  # no flip
    assert torch.equal(RandomShiftFlip(8, padding=2)(image), padded[:, :8, :8])
    monkeypatch.setattr(torch, "randint", lambda low, high, size: torch.full(size, high - 1, dtype=torch.long))
    monkeypatch.setattr(torch, "rand", lambda *size: torch.zeros(size))  # flipped
    assert torch.equal(RandomShiftFlip(8, padding=2)(image), padded[:, -8:, -8:].flip(-1))


def test_the_loader_augments_whole_batches() -> None:
    pp = Preprocessing(input_size=28, channels=1, mean=(0.0,), std=(1.0,))
    images = torch.randint(0, 256, (10, 1, training_store_size(pp), training_store_size(pp)), dtype=torch.uint8)
    dataset = TensorImageDataset(DecodedImages(images, torch.arange(10), [""] * 10, []), train_transform(pp, "light"))
    calls = []
    dataset.transform = lambda batch: calls.append(batch.shape) or train_transform(pp, "light")(batch)
    loaded = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert calls == [(4, 1, 28, 28)] and loaded[0].shape == (4, 1, 28, 28) and loaded[1].tolist() == [0, 1, 2, 3]


def test_random_affine_crop_draws_reach_the_configured_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    image = torch.rand(3, 40, 40)
    augment = RandomAffineCrop(40, 32, degrees=30, shift=0.1, shear=10, zoom=0.2, flip=True)
    monkeypatch.setattr(torch, "rand", lambda *size: torch.ones(size))
    expected = affine_crop_theta(40, 32, angle=30, translate=(4, 4), scale=1.2, shear=10, flip=False)
    assert torch.equal(augment(image), affine_crop(image, expected, 32))
    monkeypatch.setattr(torch, "rand", lambda *size: torch.zeros(size))
    expected = affine_crop_theta(40, 32, angle=-30, translate=(-4, -4), scale=0.8, shear=-10, flip=True)
    assert torch.equal(augment(image), affine_crop(image, expected, 32))


def test_augmentation_repeats_with_the_seed_and_varies_without() -> None:
    color = Preprocessing(input_size=32, crop_pct=0.875)
    store = training_store_size(color)
    image = torch.from_numpy(_rgb(size=(store, store))).permute(2, 0, 1).contiguous()
    standard = train_transform(color, "standard")
    torch.manual_seed(5)
    first, second = standard(image), standard(image)
    torch.manual_seed(5)
    assert torch.equal(standard(image), first)
    assert not torch.allclose(first, second, atol=1e-3)


def test_augmented_variants_show_different_views(tmp_path: Path) -> None:
    dataset = load_dataset(write_shapes_dataset(tmp_path / "shapes", per_class=8))
    color = Preprocessing(input_size=32, crop_pct=0.875)
    rows = augmented_variants(dataset.train.subset([0, 1]), color, "standard", variants=3)
    assert len(rows) == 2 and all(len(row) == 4 for row in rows)
    assert all(view.shape == (3, 32, 32) and view.dtype == torch.uint8 for row in rows for view in row)
    assert not torch.equal(rows[0][1], rows[0][2])
    again = augmented_variants(dataset.train.subset([0, 1]), color, "standard", variants=3)
    assert all(
        torch.equal(a, b) for row, other in zip(rows, again, strict=True) for a, b in zip(row, other, strict=True)
    )
