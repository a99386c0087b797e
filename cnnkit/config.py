"""The training configuration: every option of ``cnnkit train`` once, with its type, default and help.

:class:`TrainConfig` is what :func:`cnnkit.train` reads and what a run's ``config.yaml`` holds,
and the ``cnnkit train`` command builds its options from it (:func:`option_specs`), so the API,
the CLI and the run folder can never disagree about a name, a default or the allowed values.
Vocabularies are :class:`~enum.StrEnum` types shared by all three. This module imports nothing
heavy, so the CLI can validate options before torch loads.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError


class Augment(StrEnum):
    auto = "auto"
    standard = "standard"
    light = "light"
    shift_flip = "shift_flip"
    none = "none"


class Schedule(StrEnum):
    auto = "auto"
    plateau = "plateau"
    one_cycle = "one_cycle"


class Optimizer(StrEnum):
    adam = "adam"
    sgd = "sgd"


class Head(StrEnum):
    linear = "linear"
    mlp = "mlp"


class ClassWeight(StrEnum):
    none = "none"
    auto = "auto"


class Sampler(StrEnum):
    shuffle = "shuffle"
    balanced = "balanced"


class ImageCache(StrEnum):
    ram = "ram"
    disk = "disk"
    off = "off"


class Precision(StrEnum):
    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


class Logger(StrEnum):
    csv = "csv"
    tensorboard = "tensorboard"


class Task(StrEnum):
    auto = "auto"
    classify = "classify"
    localize = "localize"


class BoxLoss(StrEnum):
    giou = "giou"
    l1_giou = "l1_giou"
    smooth_l1 = "smooth_l1"


class Strategy(StrEnum):
    auto = "auto"
    ddp = "ddp"
    ddp_spawn = "ddp_spawn"


class Tta(StrEnum):
    none = "none"
    flip = "flip"
    shift_flip = "shift_flip"


def _option(default: Any, help: str, **limits: Any) -> Any:
    """A configuration field: its default, one line of help, and optional ``low``/``high`` bounds."""
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run does. Unset (``None``) values are chosen per model."""

    data: str | None = _option(None, "A folder of class sub-folders, or a built-in dataset name (digits).")
    model: str = _option("plain_cnn", "Model name; see 'cnnkit models'.")
    epochs: int | None = _option(
        None, "Epochs of the first stage (the head stage for pretrained models); default 20, 25 on cached features.",
        low=1,
    )  # fmt: skip
    fine_tune_epochs: int | None = _option(
        None, "Fine-tuning epochs of pretrained models (default 8 on cached activations, else 3; 0 skips).", low=0
    )
    image_size: int | None = _option(None, "Input size in pixels; default: the model's own.", low=8, high=4096)
    batch_size: int = _option(32, "Images per training batch.", low=1, high=65536)
    lr: float = _option(1e-3, "Learning rate of the first stage.", low=0.0, high=10.0, open_low=True)
    optimizer: Optimizer = _option(
        Optimizer.adam, "adam, or sgd (Nesterov momentum 0.9: with --weight-decay and one_cycle, the classic "
        "recipe for small from-scratch residual nets; its --lr is about 100x Adam's).",
    )  # fmt: skip
    fine_tune_lr_factor: float = _option(
        0.3, "Fine-tuning learning rate as a fraction of --lr.", low=0.0, open_low=True
    )
    unfreeze: str = _option("auto", "What fine-tuning trains: auto (top third of the base's blocks), all, or top:N.")
    head: Head = _option(Head.linear, "linear (dropout + dense) or mlp (dense 128 + ReLU + dropout + dense).")
    augment: Augment = _option(
        Augment.auto, "Augmentation preset; auto = standard for colour, light for grayscale; shift_flip = shifts of "
        "up to 1/16 of the side and flips (small images).",
    )  # fmt: skip
    pretrained: bool | None = _option(None, "Start from ImageNet weights (default: when they are available offline).")
    weights: str | None = _option(
        None, "Start from this local weights file: .safetensors, or a torchvision/timm .pth state dict (read "
        "without running code); a head of another shape is replaced. Implies the pretrained recipe.",
    )  # fmt: skip
    schedule: Schedule = _option(
        Schedule.auto, "Learning rate: plateau (divide by 3 after 2 epochs without a lower val loss), one_cycle "
        "(warm up to --lr over the first 25% of batches, then anneal to zero), or auto: one_cycle for fine-tuning "
        "a pretrained classifier, plateau otherwise.",
    )  # fmt: skip
    label_smoothing: float | None = _option(
        None, "Label smoothing of the cross-entropy loss; default 0.1 for pretrained models, else 0 (0.1-0.2 helps "
        "short from-scratch runs).", low=0.0, high=1.0, open_high=True,
    )  # fmt: skip
    test_tta: Tta = _option(
        Tta.none,
        "Test-time augmentation of the test score at the end of training: none, flip, or shift_flip (6 views).",
    )
    dropout: float | None = _option(None, "Dropout before the last dense layer.", low=0.0, high=1.0, open_high=True)
    weight_decay: float = _option(0.0, "L2 penalty through the optimizer's weight decay.", low=0.0, high=1.0)
    class_weight: ClassWeight = _option(ClassWeight.none, "none, or auto: weigh the loss by inverse class frequency.")
    sampler: Sampler = _option(Sampler.shuffle, "shuffle, or balanced: oversample the small classes.")
    feature_cache: bool = _option(True, "Train pretrained models on cached outputs of their frozen layers.")
    cache_views: int | None = _option(
        None, "Augmented views cached per training image (default 3; 1 without augmentation); "
        "k times more for classes the class weights or balanced sampler emphasize k-fold.", low=1, high=1000,
    )  # fmt: skip
    image_cache: ImageCache = _option(ImageCache.ram, "Where decoded pixels live: ram, disk or off.")
    max_pixels: int = _option(
        40_000_000, "Images whose header claims more pixels are skipped with a warning (decoding bombs).", low=1
    )
    drop_empty_classes: bool = _option(
        False, "Leave out class folders with no readable image (recorded in the run) instead of stopping."
    )
    dedupe: bool = _option(
        False, "Drop from val and test the files that an earlier split also holds (recorded in the run); "
        "training always warns about files repeated across splits or classes.",
    )  # fmt: skip
    patience: int = _option(5, "Early stopping: epochs without a better validation accuracy.", low=1)
    val_split: float = _option(
        0.15, "Validation fraction when the data has no val folder.", low=0.0, high=1.0, open_low=True, open_high=True
    )
    test_split: float = _option(0.15, "Test fraction for a flat folder.", low=0.0, high=1.0, open_high=True)
    seed: int = _option(0, "Seed for splits, initialisation and shuffling.", low=0, high=2**32 - 1)
    precision: Precision = _option(Precision.auto, "auto (bf16 where the hardware has it), bf16 or fp32.")
    device: str = _option("auto", "auto, cpu, cuda, cuda:N or mps.")
    devices: int = _option(
        1, "Processes per machine, one per GPU (or CPU share); above 1 trains data-parallel (DDP).", low=1, high=1024
    )
    num_nodes: int = _option(1, "Machines taking part in data-parallel training (each runs --devices).", low=1)
    strategy: Strategy = _option(
        Strategy.auto, "auto (ddp when more than one process), ddp (re-runs this command per process) or ddp_spawn."
    )
    logger: Logger = _option(Logger.csv, "csv (history.csv), or tensorboard: also TensorBoard event files.")
    out: str | None = _option(None, "Run folder; default runs/<data>-<model>.")
    task: Task = _option(
        Task.auto, "classify, or localize: also predict one box per image; auto = localize when the data has boxes."
    )
    boxes: str | None = _option(
        None, "Box annotations: a CSV (path,label,xmin,ymin,xmax,ymax), a COCO .json or a folder of Pascal VOC "
        ".xml files; default DATA/boxes.csv when present.",
    )  # fmt: skip
    box_loss: BoxLoss = _option(
        BoxLoss.l1_giou, "Box loss of localization: l1_giou (5 L1 on the corners + 2 GIoU, as DETR), smooth_l1 on "
        "centre and sqrt size (as in the notes), or giou.",
    )  # fmt: skip
    box_loss_weight: float | None = _option(
        None, "Weight of the box loss beside the class loss (default 1 for l1_giou, 5 for smooth_l1, 2 for giou).",
        low=0.0,
    )  # fmt: skip

    def __post_init__(self) -> None:
        hints = field_types()
        for spec in fields(self):
            value = _convert(spec.name, getattr(self, spec.name), hints[spec.name])  # "mlp" -> Head.mlp
            object.__setattr__(self, spec.name, value)
            _check_value(spec, value)
        parse_unfreeze(self.unfreeze, num_blocks=1)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise CnnkitError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {self.device!r}")
        if self.val_split + self.test_split >= 1:
            raise CnnkitError("--val-split and --test-split must leave training images (their sum below 1)")

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with some options changed; each value is checked and converted like one read from a file."""
        _typed(overrides, "option")  # unknown names are refused here; values are converted by __post_init__
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (enums as strings), in field order: what ``config.yaml`` holds."""
        return {key: value.value if isinstance(value, Enum) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> TrainConfig:
        if not isinstance(data, dict):
            raise CnnkitError(f"{source} must be a mapping of option names to values")
        _typed(data, source)
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Options from a YAML file: a plain mapping, or a run's ``config.yaml`` (its ``resolved`` part is ignored)."""
        from cnnkit.fileio import read_yaml

        if not Path(path).is_file():
            hint = "" if Path(path).suffix else f" (to choose a model, pass model={str(path)!r})"
            raise CnnkitError(f"config file {path} does not exist; give a YAML file of training options{hint}")
        data = read_yaml(path)
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key not in RUN_ONLY_KEYS}
        return cls.from_dict(data, source=f"config file {path}")


RUN_ONLY_KEYS = ("resolved", "format")  # sections a run's config.yaml adds around the options


def parse_unfreeze(unfreeze: str, num_blocks: int) -> int | None:
    """``all`` -> None (every block); ``top:N`` -> N; ``auto`` -> the top third of ``num_blocks``."""
    if unfreeze == "all":
        return None
    if unfreeze == "auto":
        return max(1, round(num_blocks / 3))
    if unfreeze.startswith("top:") and unfreeze[4:].isdigit() and int(unfreeze[4:]) > 0:
        return int(unfreeze[4:])
    raise CnnkitError(f"--unfreeze must be auto, all or top:N with N > 0 (e.g. top:3), not {unfreeze!r}")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_HINTS: dict[str, Any] = {}


def field_types() -> dict[str, Any]:
    """Each option's type, with ``X | None`` kept as written."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def base_type(annotation: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``Head`` -> (Head, False)."""
    if isinstance(annotation, types.UnionType):
        kinds = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return kinds[0], True
    return annotation, False


def _typed(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Convert raw values (from YAML or keyword arguments) to each option's type, or say which one is wrong."""
    hints = field_types()
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise CnnkitError(f"{source}: unknown option {unknown[0]!r}; see 'cnnkit train --help' for the options")
    return {name: _convert(name, value, hints[name]) for name, value in values.items()}


def _convert(name: str, value: Any, annotation: Any) -> Any:
    kind, optional = base_type(annotation)
    if value is None and optional:
        return None
    wrong = CnnkitError(f"{flag(name)} must be {_describe(kind)}, not {value!r}")
    if isinstance(value, Path) and kind is str:
        return str(value)
    if issubclass(kind, Enum):
        if str(value) not in {member.value for member in kind}:
            raise CnnkitError(f"{flag(name)} must be one of {', '.join(m.value for m in kind)}, not {value!r}")
        return kind(str(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise wrong
    return value


def _describe(kind: type) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(kind, kind.__name__)


def _check_value(spec: Any, value: Any) -> None:
    """Range limits from the field's metadata, as one line that names the option."""
    low, high = spec.metadata.get("low"), spec.metadata.get("high")
    if value is None or isinstance(value, bool | str) or (low is None and high is None):
        return
    too_low = low is not None and (value <= low if spec.metadata.get("open_low") else value < low)
    too_high = high is not None and (value >= high if spec.metadata.get("open_high") else value > high)
    if too_low or too_high:
        left = "(" if spec.metadata.get("open_low") else "["
        right = ")" if spec.metadata.get("open_high") else "]"
        span = f"{left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}"
        raise CnnkitError(f"{flag(spec.name)} must be in {span}, not {value}")


def option_specs() -> list[tuple[str, Any, Any, str]]:
    """(name, type, default, help) per option, for building the CLI."""
    hints = field_types()
    return [
        (spec.name, hints[spec.name], None if spec.default is MISSING else spec.default, spec.metadata["help"])
        for spec in fields(TrainConfig)
    ]
