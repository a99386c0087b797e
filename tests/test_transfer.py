"""Fast transfer learning: feature caches, image caches, heads, unfreezing, imbalance, TTA."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.config import parse_unfreeze
from cnnkit.data import decode_images, load_dataset
from cnnkit.data.transforms import eval_transform, train_transform
from cnnkit.models import create_model
from cnnkit.models.classifier import feature_blocks, split_frozen_prefix
from cnnkit.predictor import Predictor
from cnnkit.runtime import pick_device
from cnnkit.train.features import CachedFeatureDataset, extract_features, view_rows
from cnnkit.train.loaders import class_weights, train_loader, views_per_class
from cnnkit.train.module import unfreeze_top_blocks


@pytest.fixture(scope="module")
def lite0():
    return create_model("efficientnet_lite0", 3, pretrained=True, image_size=64).eval()


@pytest.fixture(scope="module")
def shapes_images(shapes_dir: Path, lite0):
    dataset = load_dataset(shapes_dir)
    return dataset, decode_images(dataset.train, lite0.preprocessing, for_training=True)


def test_cached_features_give_the_same_head_outputs_as_the_base(lite0, shapes_dir: Path) -> None:
    decoded = decode_images(load_dataset(shapes_dir).val, lite0.preprocessing)
    transform = eval_transform(lite0.preprocessing)
    cached = extract_features(
        lite0.features, decoded.images, transform, 1, batch_size=4, device=torch.device("cpu"), precision="fp32", seed=0
    )
    with torch.no_grad():
        direct = lite0(transform(decoded.images))
        from_cache = lite0.head(torch.from_numpy(cached))
    assert cached.shape == (len(decoded.labels), lite0.num_features)
    assert torch.allclose(from_cache, direct, atol=1e-4)


def test_augmented_views_really_differ(lite0, shapes_images) -> None:
    _, decoded = shapes_images
    transform = train_transform(lite0.preprocessing, "standard")
    views = extract_features(
        lite0.features, decoded.images[:6], transform, 3, batch_size=6, device=torch.device("cpu"), precision="fp32",
        seed=0,
    )  # fmt: skip
    views = torch.from_numpy(views).view(3, 6, -1)  # laid out view by view
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert (torch.nn.functional.cosine_similarity(views[a], views[b]) < 0.999).all()
    dataset = CachedFeatureDataset(views.flatten(0, 1).numpy(), decoded.labels[:6], views=3, seed=0)
    drawn = torch.stack([dataset[0][0] for _ in range(20)])
    assert len({tuple(row[:4].tolist()) for row in drawn}) > 1


def test_oversampled_classes_get_more_views_and_each_image_draws_only_its_own() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10 + [2] * 30)
    assert views_per_class(labels, 3, 3, rebalanced=False).tolist() == [3, 3, 3]
    assert views_per_class(labels, 3, 3, rebalanced=True).tolist() == [3, 27, 9]
    views = views_per_class(labels, 3, 3, rebalanced=True)[labels]
    rows = view_rows(views)
    assert rows.shape == (130, 27) and int(rows.max()) + 1 == int(views.sum()) == 270 + 270 + 270
    assert (rows[:, :3] >= 0).all() and (rows[:90, 3:] == -1).all() and (rows[90:100] >= 0).all()
    image_of_row = torch.empty(int(views.sum()), dtype=torch.long)
    for image, image_rows in enumerate(rows):
        image_of_row[image_rows[image_rows >= 0]] = image
    dataset = CachedFeatureDataset(image_of_row[:, None].float().numpy(), labels, views=views, seed=0)
    for image in (0, 95, 120):
        drawn = {int(dataset[image][0]) for _ in range(60)}
        assert drawn == {image}


def test_per_image_view_counts_follow_the_layout() -> None:
    images = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 1, 4, 4)  # image i is all i
    mean = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    views = torch.tensor([1, 3, 2])
    flat = extract_features(
        mean, images, lambda image: image.float(), views, batch_size=4, device=torch.device("cpu"), precision="fp32",
        seed=0,
    )  # fmt: skip
    assert flat[:, 0].tolist() == [0, 1, 2, 1, 2, 1]  # first views of all, second views of images 1 and 2, ...
    assert view_rows(views).tolist() == [[0, -1, -1], [1, 3, 5], [2, 4, -1]]


def test_class_weights_follow_the_counts() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    weights = class_weights(labels, 3)
    assert torch.allclose(weights, torch.tensor([100 / 180, 100 / 90, 100 / 30]))
    counts = torch.bincount(labels).float()
    assert torch.allclose(weights * counts, torch.full((3,), 100 / 3))


def test_balanced_sampler_draws_every_class_equally_often() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    dataset = torch.utils.data.TensorDataset(labels)
    loader, _ = train_loader(dataset, labels, batch_size=1000, sampler="balanced", seed=0)
    drawn = torch.cat([batch[0] for _ in range(10) for batch in loader])
    assert 0.4 < (drawn == 1).float().mean() < 0.6


def test_unfreeze_top_blocks_only(lite0) -> None:
    model = create_model("efficientnet_lite0", 3, image_size=64)
    assert parse_unfreeze("all", 18) is None and parse_unfreeze("top:2", 18) == 2 and parse_unfreeze("auto", 18) == 6
    unfreeze_top_blocks(model, 2)
    blocks = feature_blocks(model.features)
    trainable = [any(p.requires_grad for p in block.parameters()) for block in blocks]
    assert trainable == [False] * (len(blocks) - 2) + [True, True]


def test_the_frozen_prefix_computes_what_the_base_computes() -> None:
    model = create_model("efficientnet_lite0", 3, image_size=64).eval()
    unfreeze_top_blocks(model, 3)
    prefix, rest = split_frozen_prefix(model.features, 64)
    assert not any(p.requires_grad for p in prefix.parameters())
    trainable = {id(p) for p in model.features.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in rest.parameters()}
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rest(prefix(images)), model.features(images), atol=1e-5)
    resnet = create_model("resnet18", 3).eval()  # torchvision: flattens inside forward(), after its pooling layer
    unfreeze_top_blocks(resnet, 2)
    prefix, rest = split_frozen_prefix(resnet.features, 64)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rest(prefix(images)), resnet.features(images), atol=1e-5)
    torchvision_style = create_model("mobilenet_v2", 3)  # pools inside forward(): cannot be cut, so is not
    unfreeze_top_blocks(torchvision_style, 2)
    prefix, rest = split_frozen_prefix(torchvision_style.features, 224)
    assert isinstance(prefix, torch.nn.Identity) and rest is torchvision_style.features


def _train(data, out: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {"image_size": 64, "epochs": 2, "fine_tune_epochs": 0, **options}
        return cnnkit.train(data, model="efficientnet_lite0", progress=False, out=out, **options)


def test_rerun_reuses_the_cache_but_a_new_augmentation_never_does(shapes_dir: Path, tmp_path: Path) -> None:
    first = _train(shapes_dir, tmp_path / "a", augment="standard", cache_views=2)
    again = _train(shapes_dir, tmp_path / "b", augment="standard", cache_views=2)
    other = _train(shapes_dir, tmp_path / "c", augment="none", label_smoothing=0.0)
    fewer = _train(shapes_dir, tmp_path / "d", augment="standard", cache_views=1)
    assert (first.metrics["feature_cache_hit"], again.metrics["feature_cache_hit"]) == (False, True)
    assert other.metrics["feature_cache_hit"] is False and fewer.metrics["feature_cache_hit"] is False
    assert first.history[0]["loss"] == pytest.approx(again.history[0]["loss"], rel=1e-5)
    assert other.facts.cache_views == 1 and first.facts.cache_views == 2
    assert first.facts.label_smoothing == 0.1 and other.facts.label_smoothing == 0.0  # the default, or the given


def test_label_smoothing_defaults_to_a_tenth_for_pretrained_models_only() -> None:
    from cnnkit.config import TrainConfig
    from cnnkit.train.prepare import resolve_label_smoothing

    assert resolve_label_smoothing(TrainConfig(), pretrained=True) == 0.1
    assert resolve_label_smoothing(TrainConfig(), pretrained=False) == 0.0
    assert resolve_label_smoothing(TrainConfig(label_smoothing=0.2), pretrained=False) == 0.2
    assert resolve_label_smoothing(TrainConfig(label_smoothing=0.0), pretrained=True) == 0.0


def test_cached_and_uncached_head_stages_reach_similar_accuracy(shapes_dir: Path, tmp_path: Path) -> None:
    cached = _train(shapes_dir, tmp_path / "cached", augment="none", epochs=6)
    plain = _train(shapes_dir, tmp_path / "plain", augment="none", epochs=6, feature_cache=False, image_cache="off")
    assert cached.facts.feature_cache and not plain.facts.feature_cache
    assert cached.metrics["val_accuracy"] >= 0.8
    assert abs(cached.metrics["val_accuracy"] - plain.metrics["val_accuracy"]) <= 0.15


def test_fine_tuning_on_cached_activations_matches_fine_tuning_on_images(shapes_dir: Path, tmp_path: Path) -> None:
    options = dict(augment="none", epochs=1, fine_tune_epochs=2, unfreeze="top:3", precision="fp32")
    options.update(label_smoothing=0.0, schedule="plateau")  # the conditions the parity bar was set under
    cached = _train(shapes_dir, tmp_path / "cached", **options)
    plain = _train(shapes_dir, tmp_path / "plain", feature_cache=False, image_cache="off", **options)
    assert cached.facts.fine_tune_input == "cached activations"
    assert [row["stage"] for row in cached.history] == ["head", "fine_tune", "fine_tune"]
    for fast, slow in zip(cached.history, plain.history, strict=True):
        assert fast["loss"] == pytest.approx(slow["loss"], rel=2e-3)
        assert fast["val_loss"] == pytest.approx(slow["val_loss"], rel=2e-3)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(cached.model(images), plain.model(images), atol=1e-2)  # float16 cache
    pretrained = create_model("efficientnet_lite0", 3, pretrained=True, image_size=64).features.state_dict()
    for name, value in plain.model.features.state_dict().items():
        if name.endswith(("running_mean", "running_var")):  # BatchNorm stays frozen, in training too
            assert torch.equal(value, pretrained[name]), name


def test_imbalance_options_are_recorded_and_the_mlp_head_reloads(shapes_dir: Path, tmp_path: Path) -> None:
    run = _train(shapes_dir, tmp_path / "run", augment="none", class_weight="auto", sampler="balanced", head="mlp")
    assert run.config.class_weight == "auto" and run.config.sampler == "balanced"
    assert len(run.facts.class_weights) == 3 and run.facts.cache_views_per_class == [1, 1, 1]
    reloaded = cnnkit.load_run(run.path).load_model()
    assert isinstance(reloaded.head[0], torch.nn.Linear) and reloaded.head[0].out_features == 128
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(reloaded(images), run.model(images), atol=1e-5)


def test_a_cut_class_really_gets_more_cached_views(shapes_dir: Path, tmp_path: Path, private_cache: Path) -> None:
    dataset = load_dataset(shapes_dir)
    labels = np.asarray(dataset.train.labels)
    keep = np.flatnonzero((labels != 2) | (np.cumsum(labels == 2) <= 4))  # class 2 cut to 4 images
    dataset.train = dataset.train.subset(keep)
    counts = np.bincount(labels[keep], minlength=3)
    before = set(private_cache.glob("features-*.npy"))
    run = _train(dataset, tmp_path / "run", augment="standard", cache_views=2, sampler="balanced", epochs=1)
    expected = [2 * round(counts.max() / count) for count in counts]
    assert expected[2] >= 8 and run.facts.cache_views_per_class == expected
    rows = {np.load(path, mmap_mode="r").shape[0] for path in set(private_cache.glob("features-*.npy")) - before}
    assert int(np.dot(counts, expected)) in rows  # the train cache holds every extra view


def test_flip_tta_averages_the_image_and_its_mirror(lite0) -> None:
    predictor = Predictor.create(lite0, ["a", "b", "c"], device="cpu", precision="fp32")
    images = torch.randint(0, 255, (3, 3, 64, 64), dtype=torch.uint8)
    plain = predictor.probabilities(images)
    mirrored = predictor.probabilities(images.flip(-1))
    tta = predictor.probabilities(images, tta="flip")
    assert torch.allclose(tta, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(plain, mirrored, atol=1e-4)
    assert pick_device("cpu").type == "cpu"


def test_image_cache_modes_hold_the_same_pixels(shapes_dir: Path, lite0) -> None:
    split = load_dataset(shapes_dir).val
    ram, disk, off = (decode_images(split, lite0.preprocessing, cache=mode) for mode in ("ram", "disk", "off"))
    assert np.array_equal(ram.images.numpy(), disk.images[:].numpy())
    assert torch.equal(ram.images[2], off.images[2])
    assert disk.images.shape == tuple(ram.images.shape)
