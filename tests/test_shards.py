"""Streaming shards: 'cnnkit shard' writes WebDataset tars with the class map, the split and a content hash;
training streams them in a seeded order that a resumed run continues; folders stream with --image-cache off."""

from __future__ import annotations

import tarfile
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import cnnkit
from cnnkit.cli.main import app
from cnnkit.data import datasets
from cnnkit.data.datasets import LazyImages, decode_images, load_dataset
from cnnkit.data.shards import ShardImages, parse_size, read_manifest, shard, shard_dataset
from cnnkit.errors import CnnkitError
from cnnkit.models.config import Preprocessing
from tests.conftest import write_shapes_dataset


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shards")
    data = write_shapes_dataset(root / "shapes", per_class=20, size=28)
    (data / "disc" / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(app, ["shard", str(data), str(root / "out"), "--shard-size", "16KB"])
    assert result.exit_code == 0 and "next: cnnkit train" in result.output, result.output
    return data, root / "out"


def test_shards_keep_the_class_map_the_split_and_a_content_hash(sharded, tmp_path: Path) -> None:
    data, out = sharded
    manifest = read_manifest(out)
    folder = load_dataset(data)
    assert manifest["classes"] == folder.classes == ["disc", "square", "stripes"]
    for name in ("train", "val", "test"):
        split = manifest["splits"][name]
        assert sorted(zip(split["sources"], split["labels"], strict=True)) == sorted(
            zip(getattr(folder, name).sources, getattr(folder, name).labels, strict=True)
        )
        assert sum(s["count"] for s in split["shards"]) == len(split["labels"])
    assert len(manifest["splits"]["train"]["shards"]) > 3 and str(data / "disc" / "broken.png") in manifest["skipped"]
    with tarfile.open(out / manifest["splits"]["train"]["shards"][0]["file"]) as tar:  # plain tar: KEY.png, KEY.cls
        names = tar.getnames()
    assert names[:2] == ["000000000.cls", "000000000.png"] or names[:2] == ["000000000.png", "000000000.cls"]
    again = shard(data, tmp_path / "again", "16KB")
    assert again.content_sha256 == manifest["content_sha256"] and again.images_per_second > 0


def test_the_stream_covers_each_epoch_once_in_a_new_order_and_resumes_it(sharded) -> None:
    _, out = sharded
    dataset = shard_dataset(out)
    preprocessing = Preprocessing(input_size=28, mean=(0.5,) * 3, std=(0.5,) * 3, channels=3)
    images = decode_images(dataset.train, preprocessing)
    assert isinstance(images.images, ShardImages)
    stream = images.images.stream(lambda image: image, seed=0)
    first = [image.sum().item() * 10 + label for image, label in stream]
    state = stream.generator.get_state()
    second = [image.sum().item() * 10 + label for image, label in stream]
    assert len(first) == len(dataset.train) and sorted(first) == sorted(second) and first != second
    assert first != sorted(first)  # mixed across shards and classes
    stream.generator.set_state(state)  # what a resumed run does with the checkpoint's generator
    assert [image.sum().item() * 10 + label for image, label in stream] == second
    shares = []
    for rank in (0, 1):
        stream.generator.set_state(state)
        stream.share(rank, 2)
        shares.append([image.sum().item() * 10 + label for image, label in stream])
    assert len(shares[0]) == len(shares[1]) == len(second) // 2 and sorted(shares[0] + shares[1]) == sorted(second)


def test_training_streams_from_shards_and_refuses_random_access_options(sharded, tmp_path: Path) -> None:
    _, out = sharded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cnnkit.train(out, model="lenet5", epochs=2, out=tmp_path / "run", progress=False)
    assert len(run.history) == 2 and run.metrics["num_train"] == len(read_manifest(out)["splits"]["train"]["labels"])
    assert "WebDataset shards" in run.facts.dataset_notes[0]
    with pytest.raises(CnnkitError, match="--sampler balanced needs random access"):
        cnnkit.train(out, model="lenet5", epochs=1, sampler="balanced", out=tmp_path / "balanced", progress=False)


def test_bad_shard_sizes_and_folders_are_one_line_errors(sharded, tmp_path: Path) -> None:
    assert parse_size("256MB") == 256 * 10**6 and parse_size("64MiB") == 64 * 2**20 and parse_size("1000") == 1000
    for text in ("", "-1MB", "ten"):
        with pytest.raises(CnnkitError, match="--shard-size must be a size"):
            parse_size(text)
    data, out = sharded
    with pytest.raises(CnnkitError, match="not empty"):
        shard(data, out)


def test_image_cache_off_keeps_no_pixels_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file is decoded once up front to find unreadable ones; at no moment are all of them held."""
    data = write_shapes_dataset(tmp_path / "shapes", per_class=30, size=32)
    split = load_dataset(data).train
    preprocessing = Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, channels=3)
    alive, most = [0], [0]

    def counted(*args, **kwargs) -> torch.Tensor:
        image = real_prepare(*args, **kwargs)
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
        return image

    real_prepare = datasets.prepare_file
    monkeypatch.setattr(datasets, "prepare_file", counted)
    images = decode_images(split, preprocessing, cache="off")
    assert isinstance(images.images, LazyImages) and len(images.images) == len(split) == 62
    assert most[0] <= 16  # the RAM cache holds all 62 at once
    monkeypatch.undo()
    assert torch.equal(images.images[3], decode_images(split, preprocessing).images[3])
