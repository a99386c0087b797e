"""cnnkit check: duplicates (exact, near, flipped), leaks, label issues, outliers, the CLI and the training hooks."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from cnnkit.check import check_dataset, dedupe, quick_check
from cnnkit.check.copies import COPY_KINDS, write_near_copies
from cnnkit.check.findings import ImageRef
from cnnkit.check.labels import find_label_candidates
from cnnkit.check.outliers import embedding_outliers
from cnnkit.cli.main import app, main
from cnnkit.data import load_dataset
from cnnkit.data.duplicates import DuplicateFilesWarning, screen_duplicates
from cnnkit.errors import CnnkitError
from tests.conftest import DATASETS, shared_dataset, write_shapes_dataset

ORIGINALS_PER_CLASS = 4
DISTINCT_PER_CLASS = 4


def _photos(folder: str, count: int, skip: int = 0) -> list[Path]:
    """Every 7th JPEG of a hymenoptera class folder: different photos, never the same scene twice."""
    files = sorted(p for p in (shared_dataset("hymenoptera") / "train" / folder).glob("*.jpg"))
    return files[skip::7][:count]


@pytest.fixture(scope="module")
def copies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ants/ and bees/: 4 photos each with their 5 copies, 4 more distinct photos each, a dark and a blank image."""
    root = tmp_path_factory.mktemp("copies")
    for cls in ("ants", "bees"):
        (root / cls).mkdir()
        for i, source in enumerate(_photos(cls, ORIGINALS_PER_CLASS)):
            shutil.copy(source, root / cls / f"o{i}.jpg")
            write_near_copies(Image.open(source), root / cls, f"o{i}")
        for i, source in enumerate(_photos(cls, DISTINCT_PER_CLASS, skip=3)):
            shutil.copy(source, root / cls / f"d{i}.jpg")
    dark = Image.open(_photos("ants", 1, skip=5)[0]).convert("RGB")
    ImageEnhance.Brightness(dark).enhance(0.08).save(root / "ants" / "dark.png")
    grey = np.random.default_rng(0).normal(128, 2, (96, 96, 3)).clip(0, 255).astype(np.uint8)
    Image.fromarray(grey).save(root / "bees" / "blank.png")
    (root / "bees" / "notes.jpg").write_bytes(b"\x00\x01 not an image")  # hidden files are left out by the scan
    return root


@pytest.fixture(scope="module")
def copies_findings(copies_dir: Path):
    return check_dataset(copies_dir)


def _linked(findings, original: Path, copy: Path, kind: str) -> bool:
    """Whether some group of ``kind`` holds both files."""
    return any({str(original), str(copy)} <= {i.path for i in g.images} for g in findings.duplicates if g.kind == kind)


def test_near_copies_are_found_with_their_kind(copies_findings, copies_dir: Path) -> None:
    outcomes = [
        _linked(copies_findings, folder / f"o{i}.jpg", copy, "flip" if kind == "flipped" else "near")
        for folder in (copies_dir / "ants", copies_dir / "bees")
        for i in range(ORIGINALS_PER_CLASS)
        for kind, copy in ((k, next(folder.glob(f"o{i}_{k}.*"))) for k in COPY_KINDS)
    ]
    assert len(outcomes) == 40
    assert sum(outcomes) / len(outcomes) >= 0.95, f"recall {sum(outcomes)}/{len(outcomes)}"


def test_distinct_photos_are_never_grouped(copies_findings) -> None:
    for group in copies_findings.duplicates:
        pictures = {Path(i.path).parent.name + Path(i.path).stem.split("_")[0] for i in group.images}
        assert len(pictures) == 1, f"distinct photos grouped: {[i.path for i in group.images]}"


def test_inventory_counts_unreadable_and_pixel_outliers(copies_findings) -> None:
    inventory = copies_findings.inventory
    per_class = {cls: sum(split[cls] for split in inventory.counts.values()) for cls in ("ants", "bees")}
    assert per_class == {"ants": 29, "bees": 29}  # 4 x 6 + 4, plus dark.png; bees: blank.png (notes.jpg is no image)
    assert [Path(f.path).name for f in inventory.unreadable] == ["notes.jpg"]
    assert sum(inventory.modes.values()) == len(inventory.sizes) == 58
    reasons = {Path(o.image.path).name: o.reason for o in copies_findings.outliers}
    assert reasons.get("dark.png") == "very dark" and reasons.get("blank.png") == "near-blank"
    assert inventory.imbalance.advice is None


def test_cli_json_names_files_and_html_shows_thumbnails(copies_findings, copies_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "check.html"
    result = CliRunner().invoke(app, ["check", str(copies_dir), "--json", "--html", str(page)], catch_exceptions=False)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["settings"]["embeddings_from_cache"] is True  # copies_findings filled the cache
    paths = {image["path"] for group in data["duplicates"] for image in group["images"]}
    assert str(copies_dir / "ants" / "o0_flipped.png") in paths
    assert {"near", "flip"} <= {group["kind"] for group in data["duplicates"]}
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") >= len(paths) and "data:image/png;base64," in text


def test_check_has_help() -> None:
    result = CliRunner().invoke(app, ["check", "--help"])
    assert result.exit_code == 0 and "--html" in result.output and "--similarity" in result.output


def test_missing_folder_is_one_line_and_status_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["cnnkit", "check", "/no/such/folder"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_built_in_data_is_refused_in_one_line() -> None:
    with pytest.raises(CnnkitError, match="reads image folders"):
        quick_check(load_dataset("digits"))


@pytest.fixture
def leaky_dir(tmp_path: Path) -> Path:
    """Split folders where one train picture is copied into val and test, and one into another class."""
    root = write_shapes_dataset(tmp_path / "leaky", per_class=10, layout="split")
    shutil.copy(root / "train" / "disc" / "disc_000.png", root / "val" / "disc" / "copy_in_val.png")
    shutil.copy(root / "train" / "disc" / "disc_000.png", root / "test" / "disc" / "copy_in_test.png")
    shutil.copy(root / "train" / "square" / "square_001.png", root / "train" / "stripes" / "square_as_stripes.png")
    return root


def test_quick_check_finds_leaks_and_conflicts_and_says_what_to_run(leaky_dir: Path) -> None:
    findings = quick_check(load_dataset(leaky_dir))
    assert len(findings.duplicates) == 2
    assert [sorted(g.splits) for g in findings.leaks] == [["test", "train", "val"]]
    assert [g.classes for g in findings.conflicting_labels] == [["square", "stripes"]]
    assert findings.warning is not None and "2 group(s)" in findings.warning
    assert f"cnnkit check {leaky_dir}" in findings.warning and "\n" not in findings.warning
    assert findings.label_issues == [] and findings.model is None


def test_dedupe_drops_val_and_test_copies_only(leaky_dir: Path) -> None:
    splits = load_dataset(leaky_dir)
    deduped, dropped = dedupe(splits, quick_check(splits))
    assert {(Path(r.path).name, r.split) for r in dropped} == {("copy_in_val.png", "val"), ("copy_in_test.png", "test")}
    assert deduped.train.sources == splits.train.sources
    assert len(deduped.val) == len(splits.val) - 1 and len(deduped.test) == len(splits.test) - 1
    assert not any("copy_in" in source for source in deduped.val.sources + deduped.test.sources)
    assert quick_check(deduped).leaks == []


def test_a_val_folder_that_copies_train_cannot_be_deduped(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "copied", per_class=6, layout="split")
    shutil.rmtree(root / "val")
    shutil.copytree(root / "train", root / "val")
    splits = load_dataset(root)
    with pytest.raises(CnnkitError, match=r"every val image .* also appears in an earlier split"):
        dedupe(splits, quick_check(splits))


def _train_shapes(data: Path, out: Path, *flags: str):
    """``cnnkit train`` through the CLI, one quick epoch of plain_cnn at 32 px; the run's resolved facts."""
    arguments = ["train", str(data), "--model", "plain_cnn", "--epochs", "1", "--image-size", "32", "--augment",
                 "none", "--out", str(out), "--json", *flags]  # fmt: skip
    result = CliRunner().invoke(app, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return yaml.safe_load((out / "config.yaml").read_text())


def test_training_screens_for_repeated_files_with_one_warning(leaky_dir: Path) -> None:
    splits = load_dataset(leaky_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        screened, dropped = screen_duplicates(splits)
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and caught[0].category is DuplicateFilesWarning
    assert lines[0].startswith("2 group(s) of duplicate images (5 files): 1 under two or more classes, 1 shared")
    assert f"see them with: cnnkit check {leaky_dir}; --dedupe drops the val/test copies" in lines[0]
    assert screened is splits and dropped == []


def test_train_dedupe_drops_the_copies_and_records_them(leaky_dir: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = _train_shapes(leaky_dir, tmp_path / "deduped", "--dedupe")
    lines = [str(w.message) for w in caught if w.category is DuplicateFilesWarning]
    assert len(lines) == 1 and lines[0].endswith("--dedupe dropped 2 val/test file(s)")
    facts = config["resolved"]
    assert [Path(p).name for p in facts["dropped_duplicates"]] == ["copy_in_val.png", "copy_in_test.png"]
    assert facts["num_images"] == {"train": 19, "val": 6, "test": 6}  # 18 + the stripes copy; the copies left
    assert config["dedupe"] is True  # so --config repeats it


def test_imbalance_names_the_remedies(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "uneven", per_class=16)
    for extra in sorted((root / "disc").iterdir())[4:]:
        extra.unlink()
    imbalance = quick_check(load_dataset(root)).inventory.imbalance
    assert imbalance.ratio >= 3 and imbalance.smallest == "disc"
    assert "--class-weight auto" in imbalance.advice and "--sampler balanced" in imbalance.advice


def _clusters(per_class: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, 32)) * 3
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(0, 1, (len(labels), 32)), labels


def test_flipped_labels_rank_first_and_the_result_is_seeded() -> None:
    features, labels = _clusters(40, 3, seed=1)
    flipped = [3, 50, 97]
    labels[flipped] = (labels[flipped] + 1) % 3
    refs = [ImageRef(f"img{i}.png", "abc"[label], "train") for i, label in enumerate(labels)]
    issues, note = find_label_candidates(features, refs, ["a", "b", "c"], seed=0)
    assert note is None
    assert {issue.image.path for issue in issues[:3]} == {f"img{i}.png" for i in flipped}
    assert all(issue.suggested != issue.image.label for issue in issues)
    again, _ = find_label_candidates(features, refs, ["a", "b", "c"], seed=0)
    assert again == issues


def test_an_image_unlike_any_class_is_an_outlier() -> None:
    from cnnkit.check.embeddings import unit_rows
    from cnnkit.check.inventory import FileFacts

    features, labels = _clusters(30, 3, seed=2)
    features = np.abs(features) + 1  # like ReLU features: all in one orthant
    odd = np.zeros(32)
    odd[0] = 40.0
    features = np.vstack([features, odd])
    labels = np.append(labels, 0)
    facts = [FileFacts(ImageRef(f"img{i}.png", "abc"[label], "train"), 0.1) for i, label in enumerate(labels)]
    outliers = embedding_outliers(facts, unit_rows(features), ["a", "b", "c"])
    assert [o.image.path for o in outliers] == [f"img{len(labels) - 1}.png"]


@pytest.mark.slow
def test_flowers128_rose_and_tulip_share_four_files() -> None:
    folder = DATASETS / "flowers128"
    if not folder.is_dir():
        pytest.skip("flowers128 is not in ../shared/datasets")
    conflicts = quick_check(load_dataset(folder)).conflicting_labels
    assert len(conflicts) == 4
    assert all(g.classes == ["rose", "tulip"] and g.kind == "exact" for g in conflicts)
    assert all(len({Path(i.path).name for i in g.images}) == 1 for g in conflicts)  # same file name in both folders
