"""Data-parallel training: the run's processes, started once by Lightning, and each one's share of the data.

A run of ``devices x num_nodes`` processes starts them at its very beginning with Lightning's own
launcher (:class:`lightning.fabric.Fabric`: ``ddp`` runs this same command again per process,
``ddp_spawn`` forks fresh interpreters; under ``torchrun`` or SLURM the processes already exist).
Then every process prepares the data, shares the feature-cache extraction with the others and
fits each stage with a DDP :class:`~lightning.pytorch.Trainer` in the same process group: gloo
on CPUs, NCCL on GPUs, as Lightning picks.

Each epoch every rank draws the whole training order from the same seeded generator (so the
order saved in the checkpoint is the same on every rank) and keeps its own equal slice of it,
as :class:`torch.utils.data.DistributedSampler` does; validation is split without padding, so
the batch-size-weighted means that ``sync_dist`` reduces are those of the whole validation set.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from cnnkit.config import Strategy, TrainConfig
from cnnkit.errors import CnnkitError
from cnnkit.train.loaders import Loaders
from cnnkit.train.ranks import announce_run_dir, launched_world_size

REDUCE_CHUNK = 16 * 1024**2  # elements per all-reduce when gathering a feature cache


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: its rank among ``world`` processes on ``num_nodes`` machines."""

    rank: int = 0
    world: int = 1
    devices: int = 1
    num_nodes: int = 1
    device: str = "cpu"  # where collectives move tensors (NCCL needs them on the GPU)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (so all ranks take the same branch)."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return bool(value.item())

    def sum_into(self, array: np.ndarray) -> None:
        """Add up ``array`` over all ranks, in place: each rank filled its own rows and left the others at zero."""
        flat = array.reshape(-1)
        for start in range(0, len(flat), REDUCE_CHUNK):
            part = torch.from_numpy(np.ascontiguousarray(flat[start : start + REDUCE_CHUNK]))
            chunk = part.to(self.device, torch.float32)  # x + 0 is exact in float32, for float16 caches too
            torch.distributed.all_reduce(chunk)
            flat[start : start + len(chunk)] = chunk.cpu().numpy().astype(flat.dtype)

    def vary_augmentation(self, seed: int) -> None:
        """Give each rank its own random augmentations (the network, already built, stays rank 0's)."""
        if not self.main:
            torch.manual_seed(seed + self.rank)

    def trainer_options(self) -> dict[str, Any]:
        """The :class:`~lightning.pytorch.Trainer` arguments that put a stage in this run's process group."""
        if self.world == 1:
            return {"devices": 1}
        return {"devices": self.devices, "num_nodes": self.num_nodes, "strategy": "ddp",
                "use_distributed_sampler": False}  # fmt: skip


_current = Processes()


def current() -> Processes:
    """The processes of the run this process is part of (one, until :func:`run_in_processes` starts more)."""
    return _current


def run_in_processes(config: TrainConfig, run_dir: Any, function: Callable[..., Any], *args: Any) -> Any:
    """Start the run's processes (once, with Lightning's launcher) and call ``function(*args)`` in each.

    Returns this process's result; with ``ddp_spawn`` this process only waits for the spawned ones and
    returns None (results do not travel back: read them from the run folder).
    """
    devices, num_nodes = _shape(config)
    if devices * num_nodes == 1:
        return function(*args)
    from lightning.fabric import Fabric

    spawn = config.strategy == Strategy.ddp_spawn and launched_world_size() == 1
    accelerator = "cuda" if config.device.startswith("cuda") or (config.device == "auto" and _cuda()) else "cpu"
    if config.device == "mps":
        raise CnnkitError("--devices above 1 needs CPUs or CUDA GPUs; Apple's MPS trains in one process")
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                    strategy="ddp_spawn" if spawn else "ddp")  # fmt: skip
    if spawn:
        # a partial: Fabric moves the launch arguments to the device, and would refuse the frozen configuration
        return fabric.launch(_in_spawned_process, functools.partial(function, *args), (devices, num_nodes))
    announce_run_dir(run_dir)  # for the copies of this command the launcher starts next
    fabric.launch()
    _join(fabric, devices, num_nodes)
    return function(*args)


def _cuda() -> bool:
    return torch.cuda.is_available()


def _shape(config: TrainConfig) -> tuple[int, int]:
    """(processes per machine, machines): an outside launcher's, else the configuration's."""
    world = launched_world_size()
    if world == 1:
        return config.devices, config.num_nodes
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE") or world)
    return per_node, max(1, world // per_node)


def _in_spawned_process(fabric: Any, run: Callable[[], Any], shape: tuple[int, int]) -> None:
    # The stages' Trainers then see processes created outside them, as under torchrun, and start none.
    os.environ.update(LOCAL_RANK=str(fabric.local_rank), NODE_RANK=str(fabric.node_rank),
                      WORLD_SIZE=str(fabric.world_size))  # fmt: skip
    _join(fabric, *shape)
    run()


def _join(fabric: Any, devices: int, num_nodes: int) -> None:
    global _current
    _current = Processes(fabric.global_rank, fabric.world_size, devices, num_nodes, str(fabric.device))
    if fabric.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # processes sharing a machine's cores: more threads than cores make PyTorch's threads spin (as torchrun knows)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    if not _current.main:
        warnings.simplefilter("ignore")  # rank 0 says everything once


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    gathered: list[Any] = [None] * current().world
    torch.distributed.all_gather_object(gathered, value)
    return gathered


class RankShare(Sampler[int]):
    """This rank's slice of another sampler's epoch, as :class:`~torch.utils.data.DistributedSampler` cuts one.

    Every rank draws the whole order (the wrapped sampler's generator is seeded alike on all of
    them), pads it to a multiple of ``world`` by repeating its start, and keeps every ``world``-th
    index from ``rank``: disjoint, equal shares, so no rank waits for another at an epoch's end.
    """

    def __init__(self, sampler: Sampler[int], rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world
        self.indices: list[int] = []  # this rank's share of the latest epoch

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.world)

    def __iter__(self) -> Iterator[int]:
        order = list(self.sampler)
        order += order[: len(self) * self.world - len(order)]
        self.indices = order[self.rank :: self.world]
        return iter(self.indices)


def validation_share(count: int, rank: int, world: int) -> range:
    """A contiguous, unpadded slice of the validation set; together the ranks cover it once."""
    if count < world:
        raise CnnkitError(f"the validation split has {count} images, fewer than the {world} training processes")
    return range(rank * count // world, (rank + 1) * count // world)


def share_loaders(loaders: Loaders, processes: Processes) -> Loaders:
    """The loaders restricted to this rank's share (unchanged for a single process)."""
    if processes.world == 1:
        return loaders
    train, val = loaders.train, loaders.val
    if isinstance(train.dataset, IterableDataset):  # a stream of shards splits itself
        train.dataset.share(processes.rank, processes.world)
        shared_train = train
    else:
        sampler = RankShare(train.sampler, processes.rank, processes.world)
        # the same generator draws each epoch's base seed first, as in a single process
        shared_train = DataLoader(
            train.dataset, batch_size=train.batch_size, sampler=sampler, generator=train.generator
        )
    indices = validation_share(len(val.dataset), processes.rank, processes.world)
    shared_val = DataLoader(val.dataset, batch_size=val.batch_size, sampler=list(indices))
    return Loaders(shared_train, shared_val, loaders.generators)
