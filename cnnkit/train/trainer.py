"""``cnnkit.train``: one call from a dataset to a finished run folder.

From-scratch models train in one stage. Pretrained models train in two, as in the notes: a new
head on the frozen base, then fine-tuning of the base's top blocks at a lower learning rate.
Both stages run on cached outputs of the frozen layers (several augmented views per image, see
:mod:`cnnkit.train.features`), which on a CPU is many times faster than pushing every image
through the frozen layers each epoch. The best weights by validation accuracy across both
stages are kept, so fine-tuning never leaves a worse model. Every epoch leaves a checkpoint, so a
killed run continues with ``resume=`` where it stopped.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnkit.config import TrainConfig
from cnnkit.crashpoints import crash_point
from cnnkit.fileio import write_json
from cnnkit.progress import progress_console
from cnnkit.run import CURVES, METRICS, Run, load_run, release_run_dir
from cnnkit.runtime import keep_freed_memory
from cnnkit.train.callbacks import RunProgress, own_state, set_rng_state
from cnnkit.train.distributed import current, run_in_processes
from cnnkit.train.localize import plan_localize_stages, score_localization
from cnnkit.train.module import freeze
from cnnkit.train.opening import OpenedRun, checkpoint_path, open_run
from cnnkit.train.prepare import Prepared, prepare
from cnnkit.train.progress import start_line
from cnnkit.train.ranks import is_main_process
from cnnkit.train.stages import Stage, build_feature_cache, fit_stage, plan_stages


def _quiet_lightning() -> None:
    """Lightning's banners and hints mean nothing to cnnkit users; keep warnings and errors."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        r".*does not have many workers.*", r".*bf16-mixed.*", r".*module\(s\) in eval mode.*",  # frozen parts
        r".*isinstance\(treespec, LeafSpec\).*", r".*checkpoint.*", r".*ckpt_path.*",  # Lightning's own notes
        r".*IterableDataset.*has .__len__. defined.*",  # shards stream in the main process, no workers
    ):  # fmt: skip
        warnings.filterwarnings("ignore", message=message)


def train(
    data: str | Path | None = None,
    config: TrainConfig | str | Path | None = None,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> Run:
    """Train on ``data`` (a folder or a built-in dataset name) and return the run.

    ``config`` is a :class:`~cnnkit.config.TrainConfig` or a YAML file of its options (a run's
    ``config.yaml`` repeats that run); ``overrides`` are options by name, e.g. ``model="lenet5"``.
    ``resume`` continues the run in that folder where it stopped; ``epochs`` or
    ``fine_tune_epochs`` may then be raised to extend it. Writes the run folder described in
    :mod:`cnnkit.run`. ``callbacks`` are extra Lightning callbacks given to every stage's trainer
    (``cnnkit tune`` prunes trials with one).
    """
    return train_opened(open_run(data, config, resume, overrides), progress, callbacks)


def train_opened(opened: OpenedRun, progress: bool = True, callbacks: Sequence[Any] = ()) -> Run:
    """Train into a folder :func:`~cnnkit.train.opening.open_run` claimed (the CLI claims it before torch loads).

    With ``devices`` or ``num_nodes`` above 1 the run's processes start here and each trains its
    share; only rank 0 writes the folder, and the run returned elsewhere has no metrics.
    """
    _quiet_lightning()
    keep_freed_memory()
    main = is_main_process()
    try:
        run = run_in_processes(opened.config, opened.run_dir, _train_here, opened, progress, callbacks)
        return run or load_run(opened.run_dir)  # spawned processes trained it
    except BaseException:
        if main:
            opened.abandon()
        raise
    finally:
        if main:
            release_run_dir(opened.run_dir)


def _train_here(opened: OpenedRun, progress: bool, callbacks: Sequence[Any]) -> Run:
    """The whole run in this process, which may be one rank of several."""
    _quiet_lightning()  # again in a spawned process
    progress = progress and current().main
    prep = prepare(opened.config, opened.run_dir, opened.stored_facts, opened.dataset, progress)
    current().vary_augmentation(opened.config.seed)
    if progress:
        _say_what_was_found(prep)
    started = time.perf_counter()  # the first stage's time includes building its feature cache
    cache = build_feature_cache(prep, progress)
    run_progress = opened.progress or RunProgress()
    plan = plan_stages if prep.boxes is None else plan_localize_stages
    stages = plan(prep, cache, lambda model: _restore_best(run_progress, model))
    seconds: dict[str, float] = {}
    for index, stage in enumerate(stages):
        later = sum(later.epochs for later in stages[index + 1 :])
        _run_stage(index, stage, prep, run_progress, opened, progress, later, callbacks)
        seconds[stage.name], started = round(time.perf_counter() - started, 2), time.perf_counter()
    timings = {"stage_seconds": seconds, **({} if cache is None else {"feature_cache_hit": cache.hit})}
    return _finish(prep, run_progress, timings)


def _say_what_was_found(prep: Prepared) -> None:
    splits = {"train": prep.train_images, "val": prep.val_images, "test": prep.test_images}
    counts = {name: len(images.labels) for name, images in splits.items() if images is not None}
    size = prep.facts.preprocessing.input_size
    console = progress_console()
    console.print(start_line(counts, len(prep.dataset.classes), str(prep.device), size), soft_wrap=True)
    if prep.facts.input_size_reason:
        console.print(f"input size {size} px: {prep.facts.input_size_reason}", soft_wrap=True, highlight=False)


def _restore_best(progress: RunProgress, model: Any) -> None:
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)


def _run_stage(
    index: int, stage: Stage, prep: Prepared, progress: RunProgress, opened: OpenedRun, bars: bool, later: int,
    callbacks: Sequence[Any],
) -> None:  # fmt: skip
    """Run, continue, extend or skip one stage, depending on where a resumed run stopped."""
    resumed = opened.progress is not None and index == opened.resume_stage
    if opened.progress is not None and index < opened.resume_stage:
        return  # finished in an earlier process
    stage.begin()
    if resumed and opened.resume_finished and not opened.extends(stage.name):
        return
    if stage.epochs <= 0:
        return
    if not resumed:
        progress.begin_stage(index)
        if opened.rng_state is not None and index == opened.resume_stage + 1:
            # as the finished stage left them, before this one drew anything
            set_rng_state(own_state(opened.rng_state)["rng"])
    if resumed and opened.resume_finished:
        progress.finished = False
    fit_stage(
        stage, prep, progress, resume_from=checkpoint_path(prep.run_dir) if resumed else None,
        extend=resumed and opened.extends(stage.name), bars=bars, later_epochs=later, extra_callbacks=callbacks,
    )  # fmt: skip


def _finish(prep: Prepared, progress: RunProgress, timings: dict[str, Any]) -> Run:
    """Keep the best weights, draw the curves, score the test split and write ``metrics.json``."""
    from cnnkit.evaluate.metrics import score
    from cnnkit.evaluate.plots import plot_curves
    from cnnkit.predictor import Predictor

    network, dataset, config = prep.network, prep.dataset, prep.config
    freeze(network.features, frozen=False)
    _restore_best(progress, network)
    network.eval()
    if not current().main:  # rank 0 writes the curves and metrics and scores the test split
        return Run(prep.run_dir, config, prep.facts, dataset.classes, {}, model=network.cpu().eval())
    plot_curves(progress.rows, prep.run_dir / CURVES)
    best = progress.best_row or {}
    metrics: dict[str, Any] = {
        "best_epoch": best.get("epoch"), "best_stage": best.get("stage"), "val_accuracy": best.get("val_accuracy"),
        "val_loss": best.get("val_loss"), "num_train": len(prep.train_images.labels),
        "num_val": len(prep.val_images.labels), "decode_seconds": prep.decode_seconds, **timings,
    }  # fmt: skip
    crash_point("finish")
    test_images = prep.test_images
    if test_images is not None:
        predictor = Predictor.create(network, dataset.classes, device=config.device, precision=prep.facts.precision)
        if len(test_images.labels) and prep.boxes is not None:
            metrics.update(score_localization(predictor, prep, best))
        elif len(test_images.labels):
            tta = config.test_tta.value
            probabilities = predictor.probabilities(test_images.images, tta=tta)
            evaluation = score(probabilities, test_images, dataset.classes, "test", tta)
            metrics.update(test_accuracy=evaluation.accuracy, num_test=len(test_images.labels), test_tta=tta)
    metrics["total_seconds"] = round(progress.elapsed_before + time.perf_counter() - progress.started, 2)
    write_json(prep.run_dir / METRICS, metrics)
    return Run(prep.run_dir, config, prep.facts, dataset.classes, metrics, model=network.cpu().eval())
