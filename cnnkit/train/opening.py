"""Opening a run folder: a new run claims it, ``resume`` takes over one that stopped.

Both happen before any data is read, so a second training into the same folder stops at once.
Nothing heavy is imported here until a checkpoint must be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.config import TrainConfig, flag
from cnnkit.errors import CnnkitError
from cnnkit.run import (
    CHECKPOINT,
    CLASSES,
    CONFIG,
    LOCK,
    METRICS,
    WEIGHTS,
    RunFacts,
    claim_run_dir,
    default_run_name,
    lock_for_resume,
    read_run_files,
)
from cnnkit.train.ranks import is_main_process, shared_run_dir

# what --resume may change: how long, and on how many processes; never what is trained
RESUME_OPTIONS = ("epochs", "fine_tune_epochs", "devices", "num_nodes", "strategy")


@dataclass
class OpenedRun:
    """A claimed run folder and, when resuming, where the stopped run was."""

    config: TrainConfig
    run_dir: Path
    stored_facts: RunFacts | None = None
    progress: Any = None  # a RunProgress  # restored from the checkpoint; None: start from the first stage
    resume_stage: int = 0
    resume_finished: bool = False
    extended: set[str] = field(default_factory=set)  # stages given more epochs than they had
    rng_state: dict[str, Any] | None = None  # the checkpoint's recorder state, with the generators' states
    dataset: Any = None  # DatasetSplits given in memory instead of a folder to scan

    def extends(self, stage: str) -> bool:
        return stage in self.extended

    def abandon(self) -> None:
        """After a failure before the first checkpoint, leave nothing that would block a retry."""
        if self.stored_facts is not None or checkpoint_path(self.run_dir).exists():
            return
        if (self.run_dir / WEIGHTS).exists():
            return
        for name in (CONFIG, CLASSES):
            (self.run_dir / name).unlink(missing_ok=True)
        if not any(p.name != LOCK for p in self.run_dir.iterdir()):
            (self.run_dir / LOCK).unlink(missing_ok=True)
            self.run_dir.rmdir()


def open_run(
    data: str | Path | None, config: TrainConfig | str | Path | None, resume: str | Path | None, overrides: dict
) -> OpenedRun:
    if resume is not None:
        if data is not None or config is not None:
            raise CnnkitError("--resume continues a run with its own data and configuration; give no DATA or --config")
        return _resume(Path(resume), overrides)
    if not isinstance(config, TrainConfig):
        config = TrainConfig() if config is None else TrainConfig.from_file(config)
    splits = None if data is None or isinstance(data, str | Path) else data  # a DatasetSplits, already split
    if data is not None:
        overrides = {**overrides, "data": str(data) if splits is None else splits.root}
    config = config.with_overrides(**overrides)
    if config.data is None:
        raise CnnkitError("give the data to train on: a folder of class sub-folders, or a built-in name (digits)")
    name = default_run_name(config.data if splits is None else splits.name, config.model)
    if not is_main_process():  # rank 0 claimed the folder; this rank of a data-parallel run only reads it
        return OpenedRun(config, shared_run_dir(Path(config.out or Path("runs") / name)), dataset=splits)
    return OpenedRun(config, claim_run_dir(config.out, name), dataset=splits)


def _resume(run_dir: Path, overrides: dict[str, Any]) -> OpenedRun:
    if not (run_dir / CONFIG).is_file():
        raise CnnkitError(f"nothing to resume in {run_dir}: it has no {CONFIG}; start the training again")
    refused = sorted(set(overrides) - set(RESUME_OPTIONS))
    if refused:
        raise CnnkitError(
            f"cannot change {flag(refused[0])} when resuming: only {', '.join(map(flag, RESUME_OPTIONS))} can be; "
            f"start a new run with 'cnnkit train --config {run_dir / CONFIG} --out NEW_FOLDER {flag(refused[0])} ...'"
        )
    stored, facts, _ = read_run_files(run_dir)
    config = stored.with_overrides(**overrides)
    if (run_dir / METRICS).is_file() and not _longer(config, facts):
        raise CnnkitError(f"{run_dir} is complete; to train it longer, resume it with a larger --epochs")
    if is_main_process():
        lock_for_resume(run_dir)
    opened = OpenedRun(config, run_dir, stored_facts=facts)
    if checkpoint_path(run_dir).is_file():
        _take_over_checkpoint(opened, facts)
    return opened


def _longer(config: TrainConfig, facts: RunFacts) -> bool:
    return (config.epochs or 0) > facts.epochs or (config.fine_tune_epochs or 0) > facts.fine_tune_epochs


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT


def _take_over_checkpoint(opened: OpenedRun, facts: RunFacts) -> None:
    """Read where the run stopped; refuse to lengthen a stage that later stages have already built on."""
    from cnnkit.train.callbacks import RunProgress, read_checkpoint

    try:
        state = read_checkpoint(checkpoint_path(opened.run_dir))["callbacks"]["RunRecorder"]
    except Exception as exc:  # a checkpoint from elsewhere, or damaged: torch raises many kinds
        raise CnnkitError(f"{checkpoint_path(opened.run_dir)} is damaged ({str(exc)[:80]}); train again") from exc
    progress = RunProgress()
    progress.restore(state, opened.run_dir)
    if progress.best_row is not None and progress.best_state is None and state["finished"]:
        raise CnnkitError(f"{opened.run_dir / WEIGHTS} is damaged or missing; the run cannot be resumed, train again")
    opened.progress, opened.resume_stage, opened.resume_finished = progress, state["stage_index"], state["finished"]
    opened.rng_state = state  # each rank takes its own generators from it (callbacks.own_state)
    config = opened.config
    stage_names = ["train"] if not facts.pretrained else ["head", "fine_tune"]
    lengths = {"train": config.epochs, "head": config.epochs, "fine_tune": config.fine_tune_epochs}
    before = {"train": facts.epochs, "head": facts.epochs, "fine_tune": facts.fine_tune_epochs}
    for index, name in enumerate(stage_names):
        if lengths[name] is not None and lengths[name] > before[name]:
            if index < opened.resume_stage:
                raise CnnkitError(f"the {name} stage of {opened.run_dir} is over; extend a later stage instead")
            opened.extended.add(name)
