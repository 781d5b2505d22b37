"""One process by default; several through torchrun (``train.distributed: torchrun``).

``edgevpr train --distributed torchrun --nproc N`` relaunches the same command under
``torch.distributed.run`` (torchrun), which starts N processes per node and sets RANK,
WORLD_SIZE and LOCAL_RANK; each process then joins the group (NCCL on GPUs, gloo on CPUs),
wraps the model in DistributedDataParallel, takes its share of every batch and of every
mining cache, and rank 0 alone validates and writes checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from edgevpr.config import TrainConfig
from edgevpr.errors import ConfigError

ARGUMENTS_VARIABLE = "EDGEVPR_TORCHRUN_ARGUMENTS"


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items):
        """This process's share of a sequence: every world-th item from its rank."""
        return items[self.rank :: self.world]

    def gather_rows(self, rows: np.ndarray, total: int) -> np.ndarray:
        """Reassemble rows computed as ``share(range(total))`` by every rank, in the original order."""
        if self.world == 1:
            return rows
        pieces = [None] * self.world
        dist.all_gather_object(pieces, rows)
        out = np.empty((total, *rows.shape[1:]), dtype=rows.dtype)
        for rank, piece in enumerate(pieces):
            out[rank :: self.world] = piece
        return out

    def mean_over_processes(self, values: list[float]) -> list[float]:
        """Element-wise mean over all processes of equally long lists (one all-reduce)."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return (tensor / self.world).tolist()

    def any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (one all-reduce), so that all
        take the same branch around a collective."""
        if self.world == 1:
            return flag
        tensor = torch.tensor([int(flag)])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def broadcast(self, value):
        if self.world == 1:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def context_from_environment() -> Context:
    """Join the process group torchrun prepared, or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world == 1:
        return Context(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def relaunch_with_torchrun(train: TrainConfig, arguments: list[str], entry_module: str) -> int:
    """Run ``python -m entry_module`` under torchrun, each process reading ``arguments`` from
    the environment (``arguments_from_environment``), and return the exit status."""
    if train.distributed != "torchrun":
        raise ConfigError(f"train.distributed must be none or torchrun, got {train.distributed!r}")
    if train.nproc < 1 or train.nnodes < 1:
        raise ConfigError(f"train.nproc and train.nnodes must be >= 1, got {train.nproc}, {train.nnodes}")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={train.nproc}",
        f"--nnodes={train.nnodes}",
    ]
    if train.nnodes == 1:
        command.append("--standalone")
    elif train.rdzv_endpoint:
        command += ["--rdzv-backend=c10d", f"--rdzv-endpoint={train.rdzv_endpoint}"]
    else:
        raise ConfigError("train.nnodes > 1 needs train.rdzv_endpoint HOST:PORT (node 0's address)")
    # torchrun's parser would take our options (--nproc...) for its own, so they travel by environment.
    command += ["-m", entry_module]
    return subprocess.call(command, env=os.environ | {ARGUMENTS_VARIABLE: json.dumps(arguments)})


def arguments_from_environment() -> list[str]:
    """The command-line arguments ``relaunch_with_torchrun`` handed to this process."""
    return json.loads(os.environ[ARGUMENTS_VARIABLE])
