"""Bad input: files that claim huge sizes, animations, hidden files, empty or unreadable classes, and
``predict`` on folders and on mixes of good and bad files. Each test is one row of issue 13."""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.data import (
    ImageTooLarge,
    SkippedFilesWarning,
    decode_bytes,
    decode_file,
    decode_splits,
    expand_image_paths,
    load_dataset,
    prepare_file,
    prepare_images,
)
from cnnkit.data import decode as decode_module
from cnnkit.data.transforms import center_crop_resize
from cnnkit.errors import CnnkitError
from cnnkit.models.config import Preprocessing
from cnnkit.predictor import Predictor, read_image
from tests.conftest import sklearn_image, write_images, write_shapes_dataset
from tests.test_cli import run_main

SMALL = Preprocessing(input_size=32, crop_pct=0.875)


def png_claiming(width: int, height: int) -> bytes:
    """A 1 KB PNG whose IHDR (checksum fixed, so every reader believes it) says ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(data[12:29]))
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    """A 1 KB BMP whose header says ``width`` x ``height``: Pillow's own check raises DecompressionBombError."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, format="BMP")
    data = bytearray(buffer.getvalue())
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def truncated_jpeg(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def animation(path: Path, colours: list[tuple[int, int, int]], **options) -> list[np.ndarray]:
    """An animated file of one flat colour per frame; returns the frames as written."""
    frames = [np.full((20, 30, 3), colour, np.uint8) for colour in colours]
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, **options)
    return frames


def skip_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]


@pytest.mark.parametrize("make", [png_claiming, bmp_claiming], ids=["png", "bmp"])
def test_a_header_claiming_40000_squared_is_refused_before_any_pixel_is_decoded(
    make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.img"
    path.write_bytes(make(40000, 40000))
    assert path.stat().st_size < 2000

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(decode_module, "_decode_with_pillow", no_decoding)
    monkeypatch.setattr(decode_module, "_decode_with_torchvision", no_decoding)
    with pytest.raises(ImageTooLarge, match=r"40000x40000 pixels, over the limit of 40,000,000"):
        decode_file(path)
    with pytest.raises(CnnkitError, match=re.escape(f"cannot read {path} as an image (40000x40000")) as error:
        read_image(path, 3)
    assert "\n" not in str(error.value)
    [answer] = prepare_images([path], SMALL)
    assert isinstance(answer, str) and "40000x40000" in answer


def test_the_pixel_budget_is_a_parameter_of_decoding_and_of_the_dataset(tmp_path: Path) -> None:
    [photo] = write_images(tmp_path / "one", 1, size=(500, 600), suffix=".jpg")
    with pytest.raises(ImageTooLarge, match="600x500 pixels, over the limit of 200,000"):
        decode_file(photo, max_pixels=200_000)
    assert decode_file(photo, max_pixels=300_000).shape == (3, 500, 600)
    root = write_shapes_dataset(tmp_path / "shapes", per_class=8, size=24)
    large = write_images(root / "disc", 1, size=(500, 600), suffix=".png", seed=3)[0]
    dataset = load_dataset(root, val_split=0.25, test_split=0.25, max_pixels=200_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = decode_splits(dataset, SMALL)
    assert decoded.skipped == {str(large): "600x500 pixels, over the limit of 200,000 (--max-pixels)"}
    [message] = skip_warnings(caught)
    assert f"{large} (600x500 pixels" in message


def test_bad_files_of_every_split_are_named_once_with_their_reasons(tmp_path: Path) -> None:
    """Too large in train, truncated in val, a bomb BMP and a text file in test: one warning, one list."""
    root = write_shapes_dataset(tmp_path / "split", per_class=10, size=24, layout="split")
    bad = {
        root / "train" / "disc" / "huge.png": (png_claiming(40000, 40000), "40000x40000 pixels"),
        root / "val" / "square" / "cut.jpg": (truncated_jpeg(), ""),
        root / "test" / "stripes" / "bomb.bmp": (bmp_claiming(40000, 40000), "40000x40000 pixels"),
        root / "test" / "disc" / "notes.png": (b"not an image at all", "not a JPEG, PNG"),
    }
    for path, (data, _) in bad.items():
        path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = decode_splits(load_dataset(root), SMALL)
    assert sorted(decoded.skipped) == sorted(map(str, bad))
    [message] = skip_warnings(caught)
    assert message.startswith("skipped 4 file(s) that are not readable images: ")
    for path, (_, reason) in bad.items():
        assert f"{path} ({reason}" in message
    assert len(decoded.test.labels) == 6 and not set(map(str, bad)) & set(decoded.test.sources)


def test_training_finishes_and_scores_the_test_split_despite_bombs_and_animations(tmp_path: Path) -> None:
    """Before: a bomb BMP in test raised after training, an animated GIF broke ``torch.stack``; no metrics.json."""
    root = write_shapes_dataset(tmp_path / "split", per_class=10, size=32, layout="split")
    (root / "test" / "disc" / "bomb.bmp").write_bytes(bmp_claiming(40000, 40000))
    animation(root / "test" / "square" / "moving.gif", [(250, 250, 250), (0, 0, 0)])
    animation(root / "train" / "square" / "moving.gif", [(250, 250, 250), (0, 0, 0), (9, 9, 9)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cnnkit.train(
            root, model="plain_cnn", epochs=1, image_size=32, augment="none", progress=False, out=root / "r"
        )
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["num_test"] == 6 + 1  # every test image but the bomb, the GIF included
    assert metrics["num_train"] == 18 + 1


@pytest.mark.parametrize(
    ("suffix", "options"), [(".gif", {}), (".webp", {"lossless": True}), (".png", {})], ids=["gif", "webp", "apng"]
)
def test_animated_images_give_their_first_frame(suffix: str, options: dict, tmp_path: Path) -> None:
    path = tmp_path / f"moving{suffix}"
    first, *_ = animation(path, [(200, 40, 10), (10, 200, 40), (40, 10, 200)], **options)
    with Image.open(path) as written:
        assert getattr(written, "n_frames", 1) == 3
    decoded = decode_file(path)
    assert decoded.shape == (3, 20, 30)
    assert (decoded.permute(1, 2, 0).int() - torch.from_numpy(first).int()).abs().max() <= 2  # GIF's palette
    [prepared] = prepare_images([path], SMALL)
    assert isinstance(prepared, torch.Tensor) and prepared.shape == (3, 32, 32)


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_hidden_files_and_folders_are_left_out_and_counted(layout: str, tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / layout, per_class=10, size=24, layout=layout)
    classes_dir = root if layout == "flat" else root / "train"
    write_images(classes_dir / "disc" / ".ipynb_checkpoints", 2)  # one hidden folder holding images
    write_images(classes_dir / "square", 1, suffix=".png")[0].rename(classes_dir / "square" / ".hidden.png")
    write_images(classes_dir / ".ipynb_checkpoints" / "ghost", 3)  # a hidden would-be class
    (classes_dir / "stripes" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    dataset = load_dataset(root)
    every = dataset.train.sources + dataset.val.sources + (dataset.test.sources if dataset.test else [])
    assert dataset.classes == ["disc", "square", "stripes"]
    assert len(every) == 30 and not any("/." in source for source in every)
    assert dataset.skipped == {}
    assert "left out 4 hidden file(s) or folder(s) (names starting with '.')" in dataset.notes


def test_an_empty_class_folder_is_an_error_unless_dropped(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "flat", per_class=10, size=24)
    (root / "cats").mkdir()
    with pytest.raises(CnnkitError, match=re.escape(f"class 'cats' ({root / 'cats'}): empty")) as error:
        load_dataset(root)
    assert "\n" not in str(error.value) and "--drop-empty-classes" in str(error.value)
    dataset = load_dataset(root, drop_empty_classes=True)
    assert dataset.classes == ["disc", "square", "stripes"]
    assert f"dropped class 'cats' ({root / 'cats'}): empty" in dataset.notes
    for split in (dataset.train, dataset.val, dataset.test):
        assert [Path(source).parent.name for source in split.sources] == [dataset.classes[i] for i in split.labels]


def test_a_class_of_unreadable_files_is_an_error_unless_dropped(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "flat", per_class=10, size=24)
    (root / "ants").mkdir()
    for name in ("a.jpg", "b.png", "c.txt"):
        (root / "ants" / name).write_text("lost pictures")
    expected = f"class 'ants' ({root / 'ants'}): none of its 3 files is a readable image"
    with pytest.raises(CnnkitError, match=re.escape(expected)):
        load_dataset(root)
    dataset = load_dataset(root, drop_empty_classes=True)
    assert "ants" not in dataset.classes and any("dropped class 'ants'" in note for note in dataset.notes)


def test_a_class_whose_files_all_fail_to_decode_is_an_error_naming_it_before_training(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "flat", per_class=10, size=24)
    (root / "cut").mkdir()
    for i in range(10):  # they start like JPEGs, so the scan keeps them; decoding finds them broken
        (root / "cut" / f"{i}.jpg").write_bytes(truncated_jpeg(i))
    dataset = load_dataset(root)
    assert "cut" in dataset.classes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CnnkitError, match=re.escape(f"no training image of class 'cut' ({root / 'cut'}) could be")):
            decode_splits(dataset, SMALL)
    [message] = skip_warnings(caught)  # the one warning says which files, the error which class
    assert message.startswith("skipped 10 file(s)")


def test_expand_image_paths_turns_folders_into_their_visible_files(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    top = write_images(photos, 2)
    nested = write_images(photos / "trip" / "day2", 2, seed=1)
    write_images(photos / ".thumbnails", 2)
    (photos / ".hidden.png").write_bytes(top[0].read_bytes())
    single, missing = write_images(tmp_path / "single", 1)[0], tmp_path / "missing.jpg"
    assert expand_image_paths([single, photos, missing]) == [single, *sorted(top + nested), missing]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnkitError, match=re.escape(f"folder {tmp_path / 'empty'} holds no files")):
        expand_image_paths([tmp_path / "empty"])


def test_prepare_images_answers_every_readable_image_and_says_why_for_the_others(tmp_path: Path) -> None:
    good = write_images(tmp_path, 2, size=(40, 50)) + write_images(tmp_path / "jpg", 1, suffix=".jpg")
    (tmp_path / "cut.jpg").write_bytes(truncated_jpeg())
    (tmp_path / "notes.png").write_text("hello")
    (tmp_path / "huge.png").write_bytes(png_claiming(40000, 40000))
    (tmp_path / "sub").mkdir()
    bad = {
        "missing.jpg": "does not exist",
        "cut.jpg": "not a readable image: ",
        "notes.png": "not a readable image: not a JPEG, PNG",
        "huge.png": "not a readable image: 40000x40000 pixels",
        "sub": "is not a file",
    }
    paths = [good[0], *(tmp_path / name for name in bad), good[1], good[2]]
    answers = prepare_images(paths, SMALL)
    for path, answer in zip(paths, answers, strict=True):
        if path in good:
            assert torch.equal(answer, prepare_file(path, SMALL)) and answer.shape == (3, 32, 32)
        else:
            assert isinstance(answer, str) and answer.startswith(bad[path.name]), (path, answer)


def big_photo(tmp_path: Path, scale: int = 4, orientation: int | None = None) -> Path:
    """china.jpg (640 x 427) enlarged ``scale`` times, as a phone would have shot it."""
    with Image.open(sklearn_image("china.jpg")) as photo:
        large = photo.resize((photo.width * scale, photo.height * scale), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    path = tmp_path / f"big{orientation or ''}.jpg"
    large.save(path, quality=95, exif=exif)
    return path


def test_large_jpegs_decode_at_reduced_scale_and_normal_photos_exactly_as_before(tmp_path: Path) -> None:
    lite = Preprocessing(input_size=224, crop_pct=0.875)  # needs a 256 px short side
    photo = sklearn_image("china.jpg")  # 427 px short side: less than four times 256, decoded whole
    full = center_crop_resize(decode_file(photo), 224, 0.875, "bilinear")
    assert torch.equal(prepare_file(photo, lite), full)
    small = Preprocessing(input_size=96, crop_pct=0.875)  # 110 px: china.jpg is less than 4 x 110, still whole
    assert torch.equal(prepare_file(photo, small), center_crop_resize(decode_file(photo), 96, 0.875, "bilinear"))
    big = big_photo(tmp_path)  # 1708 x 2560: at 1/2 scale its 854 px short side keeps twice 256 and more
    assert decode_file(big, min_side=256).shape == (3, 854, 1280)
    assert decode_file(big, min_side=100).shape == (3, 214, 320)  # 1/8: the most draft mode shrinks
    assert decode_file(big).shape == (3, 1708, 2560)
    whole = center_crop_resize(decode_file(big), 224, 0.875, "bilinear")
    # DCT scaling filters unlike an antialiased resize: a few grey levels on average (moving the crop of the
    # full photo by one pixel changes 1.2); a wrong crop, colour or orientation would change tens.
    assert (prepare_file(big, lite).float() - whole.float()).abs().mean() < 3.0
    turned = big_photo(tmp_path, scale=2, orientation=6)  # stored 1280 x 854, shown turned: 854 wide, 1280 high
    assert decode_file(turned).shape == (3, 1280, 854)
    assert decode_file(turned, min_side=200).shape == (3, 640, 427)  # 1/2 scale, then turned


def test_predictions_do_not_change_on_a_normal_photo_and_barely_on_a_drafted_one(tmp_path: Path) -> None:
    from cnnkit.models import create_model

    network = create_model("efficientnet_lite0", 1000, pretrained=True).eval()
    predictor = Predictor.create(network, [str(i) for i in range(1000)], device="cpu", precision="fp32")
    photos = [sklearn_image("china.jpg"), big_photo(tmp_path)]
    before = predictor.probabilities(predictor.load_images(photos))  # full decode, as predict does today
    after = predictor.probabilities(torch.stack(prepare_images(photos, network.preprocessing)))
    assert torch.equal(before[0], after[0])
    assert before[1].argmax() == after[1].argmax() == before[0].argmax()
    assert (before[1] - after[1]).abs().max() < 0.05


def test_decoding_stays_within_the_budget_whatever_the_header_claims(tmp_path: Path) -> None:
    """Sizes just over, just under and far over the budget: refused or decoded, never more pixels than allowed."""
    for width, height in ((6324, 6324), (6326, 6326), (40000, 1000), (1, 65535)):
        data = png_claiming(width, height)
        try:
            image = decode_bytes(data)
        except decode_module.UndecodableImage as exc:
            assert (width * height > 40_000_000) == isinstance(exc, ImageTooLarge), (width, height, exc)
        else:
            assert image.shape[1] * image.shape[2] <= 40_000_000


@pytest.mark.filterwarnings("ignore:Invalid APNG")  # Pillow's word on a damaged animation it decodes anyway
def test_fuzzed_files_are_decoded_or_rejected_by_name(tmp_path: Path) -> None:
    """Seeded: damaged files of every format through the decoder, then through a dataset scan and decode."""
    from benchmarks.fuzz_decode import decode_all, fuzz_cases, unnamed_rejections

    cases = fuzz_cases(500, seed=1)
    outcomes = decode_all(cases)
    statuses = {outcome.status for outcome in outcomes}
    failures = [(o.case.name, o.case.mutation, o.status, o.detail) for o in outcomes if o.status[0] not in "ar"]
    assert failures == []  # only "accepted" and "rejected: <kind>", no traceback, no hang
    assert {"accepted", "rejected: corrupt", "rejected: too large", "rejected: not an image"} <= statuses
    assert max(outcome.seconds for outcome in outcomes) < 10
    unnamed, left_out = unnamed_rejections(cases[:200], tmp_path / "fuzzed")
    assert unnamed == [] and left_out > 30


@pytest.mark.parametrize("size", ["99999999999999999999", "0", "-3", "many"])
def test_an_absurd_batch_size_is_one_line_before_anything_is_written(size: str, tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(monkeypatch, capsys, "train", "digits", "--batch-size", size, "--out", str(out))
    message = err.strip().splitlines()[-1]  # Click puts its usage line above a value it cannot parse
    assert code == 2 and "--batch-size" in message and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("code", "advice"), [(28, "the disk is full"), (30, "the file system is read-only"), (13, "permission denied")]
)  # ENOSPC, EROFS, EACCES (raised by a stand-in: tests run as root and cannot fill a disk)
def test_a_file_system_failure_while_training_is_one_line_and_leaves_no_half_run(
    code: int, advice: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    import os as real_os

    replace = real_os.replace

    def failing_replace(source, target):
        if str(target).endswith("model.safetensors"):
            raise OSError(code, real_os.strerror(code))
        return replace(source, target)

    monkeypatch.setattr("cnnkit.fileio.os.replace", failing_replace)
    out = tmp_path / "run"
    exit_code, _, err = run_main(monkeypatch, capsys, "train", "digits", "--model", "lenet5", "--epochs", "1",
                                 "--out", str(out))  # fmt: skip
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # stderr also has the "found" line
    assert exit_code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f"cannot write {out / 'model.safetensors'}: {advice}" in err
    assert f"the last good checkpoint is kept: cnnkit train --resume {out}" in err
    assert not (out / "model.safetensors").exists() and not list(out.glob(".*.tmp"))


def test_a_path_too_long_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / ("x" * 300)
    code, _, err = run_main(monkeypatch, capsys, "train", "digits", "--out", str(out))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "too long" in errors[0].lower() and "Traceback" not in err, err


RUN_COMMANDS = {  # each command that reads a run folder, with the arguments it needs besides the folder
    "evaluate": lambda run, image: ["evaluate", run],
    "predict": lambda run, image: ["predict", image, "--run", run],
    "report": lambda run, image: ["report", run],
    "explain": lambda run, image: ["explain", run, image],
    "visualize": lambda run, image: ["visualize", run, "filters"],
    "export": lambda run, image: ["export", run],
    "serve": lambda run, image: ["serve", run, "--port", "0"],
    "resume": lambda run, image: ["train", "--resume", run],
}


@pytest.mark.parametrize("damage", ["missing", "config", "weights"])
@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
def test_every_command_given_a_missing_or_damaged_run_says_so_in_one_line(
    command: str, damage: str, plain_run, tmp_path: Path, monkeypatch, capsys
) -> None:
    run = tmp_path / "run"
    if damage != "missing":
        shutil.copytree(plain_run.path, run)
        broken = run / ("config.yaml" if damage == "config" else "model.safetensors")
        broken.write_bytes(b"\x00garbage: [" + broken.read_bytes()[:40])
    image = sklearn_image("china.jpg")
    code, _, err = run_main(monkeypatch, capsys, *RUN_COMMANDS[command](str(run), image))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert str(run) in errors[0]


@pytest.mark.parametrize("command", ["train", "check", "tune", "evaluate", "predict", "export", "serve"])
def test_every_command_refuses_an_unknown_option_without_a_traceback(command: str, monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, command, "--no-such-option")
    assert code == 2 and "No such option" in err and "Traceback" not in err, err
