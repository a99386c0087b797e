"""The stages of a localization run: the classifier's recipe, with boxes riding along.

From scratch: one stage. Pretrained: the heads (class and box) on the frozen base, then the
base's top blocks fine-tuned at the lower rate, as for classification. Both read images, not the
feature cache: every epoch draws fresh box-moving augmentations, and on the 283 critters photos
an epoch through frozen EfficientNet-Lite0 takes seconds (the cache's views would also have to
store each view's moved box, for little gain at this size).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.utils.data import DataLoader

from cnnkit.data.box_transforms import BoxImageDataset, BoxTransform
from cnnkit.data.boxes import box_tensor
from cnnkit.data.datasets import DecodedImages
from cnnkit.runtime import inference_batch_size
from cnnkit.train.loaders import Loaders, train_loader
from cnnkit.train.localize_module import LocalizerModule
from cnnkit.train.module import freeze, unfreeze_top_blocks
from cnnkit.train.prepare import Prepared
from cnnkit.train.stages import Stage


def box_dataset(prep: Prepared, images: DecodedImages, training: bool) -> BoxImageDataset:
    augment = prep.facts.augment if training else "none"
    return BoxImageDataset(images, box_tensor(images.sources, prep.boxes), BoxTransform(prep.facts.preprocessing,
                                                                                       augment))  # fmt: skip


def box_loaders(prep: Prepared) -> Loaders:
    """Augmented (image, (label, box)) batches for training, plain ones for validation."""
    config = prep.config
    train_set = box_dataset(prep, prep.train_images, training=True)
    loader, generator = train_loader(train_set, prep.train_images.labels, config.batch_size, config.sampler,
                                     config.seed)  # fmt: skip
    val = DataLoader(box_dataset(prep, prep.val_images, training=False), batch_size=inference_batch_size(prep.device))
    return Loaders(loader, val, [generator])


def plan_localize_stages(prep: Prepared, cache: None, restore_best: Callable[[nn.Module], None]) -> list[Stage]:
    """Like :func:`~cnnkit.train.stages.plan_stages`, with the localizer and its box loss in every stage."""
    network, facts, config = prep.network, prep.facts, prep.config
    options = {"box_loss": config.box_loss.value, "box_loss_weight": config.box_loss_weight}

    def stage(name: str, epochs: int, lr: float, begin: Callable[[], None] = lambda: None) -> Stage:
        return Stage(name, epochs, lr, facts.precision, lambda: (network, box_loaders(prep)), begin,
                     LocalizerModule, options)  # fmt: skip

    if not facts.pretrained:
        return [stage("train", facts.epochs, config.lr)]

    def begin_fine_tuning() -> None:
        restore_best(network)
        unfreeze_top_blocks(network, prep.unfreeze_top)

    return [
        stage("head", facts.epochs, config.lr, begin=lambda: freeze(network.features, frozen=True)),
        stage("fine_tune", facts.fine_tune_epochs, facts.fine_tune_lr, begin=begin_fine_tuning),
    ]


def score_localization(predictor, prep: Prepared, best_row: dict) -> dict:
    """``metrics.json``'s localization entries: the best epoch's validation IoU, the test scores and the baseline."""
    from cnnkit.evaluate.boxes import box_metrics, constant_box_metrics

    test = prep.test_images
    probabilities, predicted = predictor.localize(test.images)
    truth = box_tensor(test.sources, prep.boxes)
    scores = box_metrics(probabilities.argmax(1), predicted, test.labels, truth, prep.dataset.classes)
    baseline = constant_box_metrics(box_tensor(prep.train_images.sources, prep.boxes), truth)
    validation = {f"{name}": best_row.get(name) for name in ("val_iou", "val_iou50", "val_iou75", "val_both")}
    return {
        **validation, "test_accuracy": scores["accuracy"], "num_test": scores["num_images"],
        **{f"test_{name}": value for name, value in scores.items() if name not in ("accuracy", "num_images")},
        "test_constant_box": baseline,
    }  # fmt: skip
