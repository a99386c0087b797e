"""Which process of a data-parallel run this one is, read from the launcher's environment before torch loads.

Under ``torchrun`` every process has ``RANK``; processes that Lightning's launcher starts (and,
once it has started them, the first one too) have ``LOCAL_RANK`` and ``NODE_RANK``; SLURM gives
``SLURM_PROCID``. Only the main process (rank 0, or the only one) claims, writes and prints; the
others train beside it and write nothing into the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_DIR_VARIABLE = "CNNKIT_RUN_DIR"  # the folder rank 0 claimed, for the processes it starts
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")


def _number(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else default


def is_main_process() -> bool:
    """True for rank 0 of a data-parallel run and for a run of one process."""
    if any(_number(name, 0) != 0 for name in _RANK_VARIABLES):
        return False
    return not (_number("SLURM_NTASKS", 1) > 1 and _number("SLURM_PROCID", 0) != 0)


def launched_world_size() -> int:
    """How many processes an outside launcher (torchrun, SLURM's srun) started for this run; 1 if none did."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_WORLD_SIZE" in os.environ:
        return _number("WORLD_SIZE", 1)
    return _number("SLURM_NTASKS", 1) if "SLURM_PROCID" in os.environ else 1


def shared_run_dir(default: Path) -> Path:
    """For a process other than rank 0: the folder rank 0 claimed (when it started this process), else ``default``."""
    return Path(os.environ.get(RUN_DIR_VARIABLE) or default)


def announce_run_dir(run_dir: Path) -> None:
    """Tell the processes rank 0 is about to start which folder it claimed."""
    os.environ[RUN_DIR_VARIABLE] = str(run_dir)
