"""The run folder: the one reader and writer of what a training run leaves behind.

Layout of ``runs/NAME/``::

    config.yaml                 the TrainConfig, then ``resolved:`` facts (preprocessing, device, data fingerprint)
    classes.json                class names; index i is the model's output i
    model.safetensors           best weights (by validation accuracy across all stages)
    model.safetensors.sha256    their SHA-256 (``sha256sum -c`` format), checked before every use
    last.ckpt                   Lightning checkpoint of the last finished epoch, for ``--resume``
    history.csv                 one row per epoch: loss, accuracy, val_loss, val_accuracy, lr, stage,
                                seconds (the epoch's duration) and elapsed (seconds since the run started)
    curves.png, metrics.json    training curves and headline numbers, written when the run completes
    .lock                       present while a process trains into the folder (its PID and host)

Every file is written atomically (see :mod:`cnnkit.fileio`). This module imports nothing heavy,
so the CLI can claim a folder before torch loads; models are built only by :meth:`Run.load_model`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit.config import RUN_ONLY_KEYS, TrainConfig
from cnnkit.errors import CnnkitError, reject_url
from cnnkit.fileio import read_json, read_yaml, sha256_file, write_text, write_yaml
from cnnkit.models.config import Preprocessing

if TYPE_CHECKING:
    import torch

    from cnnkit.data.folders import DatasetSplits
    from cnnkit.models.classifier import Classifier

CONFIG, CLASSES, WEIGHTS, CHECKPOINT = "config.yaml", "classes.json", "model.safetensors", "last.ckpt"
HISTORY, METRICS, CURVES, LOCK = "history.csv", "metrics.json", "curves.png", ".lock"
TENSORBOARD = "tensorboard"
CALIBRATION_FILE = "calibration.json"
HISTORY_COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "elapsed")
FORMAT = 2  # version of the run folder layout


@dataclass
class RunFacts:
    """What a run resolved from its configuration, the model and the data: recorded, never chosen by the user."""

    preprocessing: Preprocessing
    classes: list[str]
    data_fingerprint: str
    pretrained: bool
    augment: str
    epochs: int
    fine_tune_epochs: int
    unfreeze: str
    fine_tune_lr: float
    precision: str
    device: str
    label_smoothing: float = 0.0
    dataset_layout: str = "flat"
    dataset_notes: list[str] = field(default_factory=list)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size_reason: str = ""  # why the run trains at preprocessing.input_size
    weights: str = "none"  # where the starting weights came from
    feature_cache: bool = False
    cache_views: int | None = None
    cache_views_per_class: list[int] | None = None
    class_weights: list[float] | None = None
    frozen_batchnorm: bool = False
    channels_last: bool = True
    fine_tune_input: str | None = None
    fine_tune_precision: str | None = None
    num_images: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    dropped_duplicates: list[str] = field(default_factory=list)  # val/test files --dedupe left out
    task: str = "classify"  # or "localize": the model also predicts one box per image

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> RunFacts:
        known = {spec.name for spec in fields(cls)}
        try:
            values = {key: value for key, value in data.items() if key in known}
            values["preprocessing"] = Preprocessing.from_dict(values["preprocessing"])
            return cls(**values)
        except (KeyError, TypeError, AttributeError) as exc:
            raise CnnkitError(f"{source} has damaged 'resolved' facts ({exc}); the run cannot be read") from exc

    def updated(self, **changes: Any) -> RunFacts:
        return replace(self, **changes)


def write_config(run_dir: Path, config: TrainConfig, facts: RunFacts) -> None:
    """``config.yaml``: the options (readable by ``--config``) followed by the resolved facts."""
    write_yaml(run_dir / CONFIG, {**config.to_dict(), "format": FORMAT, "resolved": facts.to_dict()})


def data_fingerprint(dataset: DatasetSplits) -> str:
    """A digest of the class map and of every split's files and labels: resume refuses when it changes."""
    import hashlib

    digest = hashlib.sha256(json.dumps(dataset.classes).encode())
    for name in ("train", "val", "test"):
        split = getattr(dataset, name)
        if split is not None:
            digest.update(json.dumps([name, split.sources, split.labels]).encode())
    return digest.hexdigest()[:24]


# --- claiming a folder --------------------------------------------------------------------------------------------


def default_run_name(data: str, model: str) -> str:
    name = Path(data).name or Path(data).resolve().name
    return f"{name}-{model.replace(':', '_').replace('/', '_')}"


def claim_run_dir(out: str | Path | None, default_name: str, root: str | Path = "runs") -> Path:
    """Create (or take over) the run folder and lock it, before any data is read.

    ``out`` must be new, empty, or left by a run that stopped before its first weights (so a failed
    start never blocks a retry). Without ``out`` the folder is ``runs/<default_name>``, suffixed -2,
    -3... so no run is overwritten. Exactly one of several processes racing for a folder wins.
    """
    if out is not None:
        path = Path(out)
        _make_dir(path, exist_ok=True)
        _lock(path)
        leftovers = [p.name for p in path.iterdir() if p.name not in (LOCK, CONFIG, CLASSES, TENSORBOARD)]
        if leftovers:
            release_run_dir(path)
            raise CnnkitError(
                f"--out {path} already holds a run ({', '.join(sorted(leftovers)[:3])}); choose a new folder, "
                f"or continue it with 'cnnkit train --resume {path}'"
            )
        return path
    base, n = Path(root) / default_name, 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            _make_dir(path, exist_ok=False)
        except FileExistsError:
            n += 1
            continue
        _lock(path)
        return path


def lock_for_resume(path: Path) -> None:
    """Lock a run folder that ``--resume`` continues; a lock left by a dead process is taken over."""
    _lock(path)


def release_run_dir(path: Path) -> None:
    (path / LOCK).unlink(missing_ok=True)


def _make_dir(path: Path, exist_ok: bool) -> None:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        raise
    except OSError as exc:
        raise CnnkitError(f"cannot create the run folder {path} ({exc.strerror}); choose another --out") from exc
    if not path.is_dir():
        raise CnnkitError(f"--out {path} is a file, not a folder; choose another --out")


def _link_lock(lock: Path) -> None:
    """Write the holder to a private file, then link it to ``lock``: the link fails if the lock exists."""
    private = lock.with_name(f"{LOCK}.{os.getpid()}.{socket.gethostname()}")
    private.write_text(json.dumps(_holder()))
    try:
        os.link(private, lock)
    finally:
        private.unlink(missing_ok=True)


def _remove_temporary_files(path: Path) -> None:
    """Temporary files a killed process left (see :func:`cnnkit.fileio.atomic_path`); never under a real name."""
    for leftover in path.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), so a reused PID is not mistaken for the locker."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _holder() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid)}


def _lock_is_stale(lock: Path) -> bool:
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return True  # a lock cut short by a kill is no lock
    if holder.get("host") != socket.gethostname():
        return False  # another machine's process cannot be checked from here
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return holder.get("start") is not None and holder.get("start") != _process_start(pid)


def _lock(path: Path) -> None:
    """Create ``.lock`` holding this process's PID and host, complete from its first moment (a hard link)."""
    lock = path / LOCK
    for _ in range(2):
        try:
            _link_lock(lock)
        except FileExistsError:
            if not _lock_is_stale(lock):
                holder = lock.read_text(errors="replace").strip()
                message = f"{path} is in use by another training ({holder}); wait for it or choose another --out"
                raise CnnkitError(message) from None
            lock.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise CnnkitError(f"cannot write in the run folder {path} ({exc.strerror}); choose another --out") from exc
        _remove_temporary_files(path)
        return
    raise CnnkitError(f"{path} is being claimed by another training at this moment; choose another --out")


# --- history and weights ------------------------------------------------------------------------------------------


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    extra = [name for name in (rows[0] if rows else {}) if name not in HISTORY_COLUMNS]  # e.g. localization's val_iou
    writer = csv.DictWriter(buffer, fieldnames=[*HISTORY_COLUMNS, *extra], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_history(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key != "stage":
                row[key] = float(value) if value not in ("", None) else None
    return rows


def save_run_weights(run_dir: Path, state: dict[str, torch.Tensor], epoch: int) -> None:
    """``model.safetensors`` (noting the epoch it comes from) and then its SHA-256, each atomically."""
    from cnnkit.fileio import save_weights

    save_weights(state, run_dir / WEIGHTS, metadata={"epoch": str(epoch)})
    write_text(run_dir / f"{WEIGHTS}.sha256", f"{sha256_file(run_dir / WEIGHTS)}  {WEIGHTS}\n")


def weights_intact(run_dir: Path) -> bool:
    """Whether ``model.safetensors`` matches its recorded SHA-256 (runs older than the record pass)."""
    record = run_dir / f"{WEIGHTS}.sha256"
    if not record.is_file():
        return True
    return record.read_text().split()[:1] == [sha256_file(run_dir / WEIGHTS)]


def check_weights(run_dir: Path) -> None:
    if not weights_intact(run_dir):
        raise CnnkitError(
            f"{run_dir / WEIGHTS} is damaged (its SHA-256 does not match {WEIGHTS}.sha256); "
            f"restore the file from a copy or train again"
        )


# --- reading a run back -------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished (or loaded) run: its folder, typed configuration and facts, classes and, once loaded, its model."""

    path: Path
    config: TrainConfig
    facts: RunFacts
    classes: list[str]
    metrics: dict[str, Any]
    model: Classifier | None = None

    @property
    def preprocessing(self) -> Preprocessing:
        return self.facts.preprocessing

    @property
    def history(self) -> list[dict[str, Any]]:
        return read_history(self.path / HISTORY)

    @property
    def temperature(self) -> float:
        """The temperature ``cnnkit evaluate --calibrate`` fitted, or 1.0 if the run was never calibrated."""
        path = self.path / CALIBRATION_FILE
        return float(read_json(path)["temperature"]) if path.is_file() else 1.0

    def load_dataset(self, data: str | Path | None = None) -> DatasetSplits:
        """The run's own data split exactly as in training, or ``data`` split with the same settings."""
        from cnnkit.data.datasets import load_dataset

        cfg = self.config
        options = dict(max_pixels=cfg.max_pixels, drop_empty_classes=cfg.drop_empty_classes)
        return load_dataset(data or cfg.data, cfg.val_split, cfg.test_split, cfg.seed, **options)

    def load_model(self) -> Classifier:
        """Rebuild the architecture from config.yaml and load model.safetensors (after checking its SHA-256)."""
        if self.model is None:
            from safetensors import SafetensorError

            from cnnkit.models.registry import create_model

            check_weights(self.path)
            localize = self.facts.task == "localize"
            try:
                self.model = create_model(
                    self.config.model,
                    num_classes=len(self.classes),
                    pretrained=False,
                    image_size=self.preprocessing.input_size,
                    weights=None if localize else self.path / WEIGHTS,
                    head=self.config.head.value,
                    **self.facts.model_kwargs,
                )
                if localize:
                    self.model = _localizer(self.model, self.preprocessing, self.path / WEIGHTS)
            except (SafetensorError, RuntimeError) as exc:  # weights that do not fit the architecture
                raise CnnkitError(f"{self.path / WEIGHTS} cannot be loaded ({str(exc)[:120]}); train again") from exc
            self.model.preprocessing = self.preprocessing
            self.model.eval()
        return self.model


def _localizer(classifier: Classifier, preprocessing: Preprocessing, weights: Path) -> Classifier:
    """The classifier with its box head, as a localization run trained it, with the run's weights."""
    from cnnkit.fileio import load_weights
    from cnnkit.models.localizer import Localizer

    classifier.preprocessing = preprocessing
    model = Localizer(classifier)
    model.load_state_dict(load_weights(weights))
    return model  # type: ignore[return-value]


def read_run_files(path: Path) -> tuple[TrainConfig, RunFacts, list[str]]:
    """The typed configuration, facts and classes of a run folder, or one line saying what is wrong."""
    source = path / CONFIG
    raw = read_yaml(source)
    if not isinstance(raw, dict) or "resolved" not in raw:
        raise CnnkitError(f"{source} is not a cnnkit run configuration; pass a folder written by 'cnnkit train'")
    config = TrainConfig.from_dict({k: v for k, v in raw.items() if k not in RUN_ONLY_KEYS}, source=str(source))
    facts = RunFacts.from_dict(raw["resolved"], str(source))
    try:
        classes = read_json(path / CLASSES)
    except (OSError, ValueError) as exc:
        raise CnnkitError(f"{path / CLASSES} is missing or damaged; the run cannot be read") from exc
    return config, facts, classes


def load_run(path: str | Path) -> Run:
    """Open a run folder written by :func:`cnnkit.train`."""
    reject_url(path, "run folder")
    path = Path(path)
    if path.is_file() and (path.name in (WEIGHTS, CONFIG, CLASSES) or (path.parent / CONFIG).is_file()):
        raise CnnkitError(f"{path} is a file of a run; give the run folder {path.parent} instead")
    missing = [name for name in (CONFIG, CLASSES, WEIGHTS) if not (path / name).is_file()]
    if not path.is_dir() or missing:
        what = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
        raise CnnkitError(f"run folder {path} {what}; pass a folder written by 'cnnkit train'")
    config, facts, classes = read_run_files(path)
    metrics_path = path / METRICS
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return Run(path, config, facts, classes, metrics)
