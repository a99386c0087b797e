"""Data-parallel training with two CPU processes (gloo): disjoint equal shares of every epoch in the seeded
order, metrics of the whole validation set, one run folder written by rank 0, and a DDP run that resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from cnnkit.data.datasets import decode_images
from cnnkit.data.transforms import eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.predictor import Predictor
from cnnkit.run import load_run
from cnnkit.train.distributed import RankShare, validation_share
from tests.conftest import write_shapes_dataset
from tests.test_first_hour import child_env

WORKER = Path(__file__).with_name("ddp_worker.py")
EPOCHS = 3
RUN_FILES = {"classes.json", "config.yaml", "curves.png", "history.csv", "last.ckpt", "metrics.json",
             "model.safetensors", "model.safetensors.sha256"}  # fmt: skip


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=child_env(), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two processes train lenet5 for 3 epochs on 36 training and 11 validation images (odd: a padded split
    would count one image twice), then the CLI resumes the run for a 4th epoch."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_shapes_dataset(root / "shapes", per_class=20, size=28, layout="split")
    next((data / "val" / "disc").iterdir()).unlink()
    _run([sys.executable, str(WORKER), str(data), "run", "records", str(EPOCHS)], cwd=root)
    return root, data


def _epoch_orders(count: int, seed: int, epochs: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """The training order of each epoch, as the run's seeded generator draws it (``train_loader``)."""
    generator, orders = generator or torch.Generator(), []
    generator.manual_seed(seed)
    for _ in range(epochs):
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the DataLoader's base seed for the epoch
        orders.append(torch.randperm(count, generator=generator).tolist())
        torch.randperm(count, generator=generator)  # RandomSampler draws an empty remainder at the end of its epoch
    return orders


def test_each_rank_gets_a_disjoint_equal_share_of_each_epoch_in_the_seeded_order(ddp_run) -> None:
    root, _ = ddp_run
    every = json.loads((root / "records" / "all.json").read_text())
    index = {fingerprint: i for i, fingerprint in enumerate(every)}
    assert len(index) == len(every) == 36
    for epoch, order in enumerate(_epoch_orders(len(every), seed=0, epochs=EPOCHS)):
        shares = [[index[f] for f in json.loads((root / "records" / f"rank{r}-epoch{epoch}.json").read_text())]
                  for r in (0, 1)]  # fmt: skip
        assert len(shares[0]) == len(shares[1]) == 18
        assert set(shares[0]).isdisjoint(shares[1]) and set(shares[0]) | set(shares[1]) == set(range(36))
        assert shares == [order[0::2], order[1::2]]


def test_the_history_holds_the_metrics_of_the_whole_validation_set(ddp_run) -> None:
    root, _ = ddp_run
    run = load_run(root / "run")
    best = max(run.history, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
    val = decode_images(run.load_dataset().val, run.preprocessing)
    assert len(val.labels) == 11
    with torch.no_grad():
        transform = eval_transform(run.preprocessing)
        logits = run.load_model()(torch.stack([transform(image) for image in val.images]))
    assert best["val_accuracy"] == pytest.approx((logits.argmax(1) == val.labels).float().mean().item(), abs=1e-6)
    assert best["val_loss"] == pytest.approx(F.cross_entropy(logits, val.labels).item(), rel=1e-5)


def test_rank_zero_alone_writes_one_run_folder_that_reloads_and_predicts(ddp_run) -> None:
    root, _ = ddp_run
    assert sorted(p.name for p in root.iterdir()) == ["records", "run", "shapes"]  # no second run, no logs
    assert {p.name for p in (root / "run").iterdir()} == RUN_FILES  # and the lock is released
    run = load_run(root / "run")
    assert run.config.devices == 2 and len(run.history) == EPOCHS
    test = decode_images(run.load_dataset().test, run.preprocessing)
    predictor = Predictor.create(run.load_model(), run.classes, device="cpu", precision="fp32")
    accuracy = (predictor.probabilities(test.images).argmax(1) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(run.metrics["test_accuracy"])


def test_the_command_line_resumes_a_ddp_run(ddp_run) -> None:
    root, _ = ddp_run
    before = load_run(root / "run").history
    _run([sys.executable, "-m", "cnnkit", "train", "--resume", "run", "--epochs", str(EPOCHS + 1)], cwd=root)
    after = load_run(root / "run").history
    assert len(after) == EPOCHS + 1 and after[:EPOCHS] == before
    assert not (root / "run" / ".lock").exists() and sorted(p.name for p in root.iterdir()) == [
        "records",
        "run",
        "shapes",
    ]
    # the resumed epoch drew the 4th order of the seeded generator: its state is that of 4 draws, on both ranks
    state = torch.load(root / "run" / "last.ckpt", weights_only=True)["callbacks"]["RunRecorder"]
    generator = torch.Generator()
    _epoch_orders(36, 0, EPOCHS + 1, generator)
    assert [torch.equal(rank["generators"][0], generator.get_state()) for rank in state["ranks"]] == [True, True]


def test_rank_shares_pad_like_distributed_sampler_and_validation_is_never_padded() -> None:
    shares = [list(RankShare(list(range(7)), rank, 3)) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]
    assert [list(validation_share(7, rank, 3)) for rank in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]
    with pytest.raises(CnnkitError, match="fewer than the 3 training processes"):
        validation_share(2, 0, 3)
