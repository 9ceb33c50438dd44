"""Process groups for data-parallel training with ``torch.distributed`` and ``torchrun``.

Launch any training command under ``torchrun``; every process joins the group
that the launcher describes in its environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc-per-node 2 -m pyrogen train vae --out runs/ddp

Each rank takes its contiguous share of every global minibatch, gradients are
averaged by :class:`~torch.nn.parallel.DistributedDataParallel`, and logging,
evaluation and checkpoints happen on rank 0 only. The backend is NCCL where
there is a GPU and gloo on the CPU.
"""

import os

import torch
import torch.distributed as dist


def init_from_env(device=None):
    """Join the process group described by ``torchrun``'s environment, if any.

    :returns: True when running in a group of more than one process.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    device = torch.device(device) if device not in (None, "auto") else None
    use_nccl = torch.cuda.is_available() and (device is None or device.type == "cuda")
    dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    if use_nccl:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_world_size() > 1


def rank():
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size():
    """The number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process():
    return rank() == 0


def all_reduce_sum(tensor):
    """Sum a tensor over all processes, in place; a no-op outside a group."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier():
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj, src=0):
    """``obj`` from rank ``src`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def seed_rank_noise(seed, epoch):
    """Give ranks other than 0 their own stream of torch's global generator.

    Rank 0 keeps a single process's stream; rank r > 0 is reseeded from
    ``(seed, epoch, r)``, so a resumed run (which calls this again for its epoch)
    draws the same noise on every rank as the uninterrupted run.
    """
    if rank() > 0:
        torch.manual_seed(hash((seed, epoch, rank())) % 2**63)


class RankZeroRun:
    """Mixin for trainers: the ``run`` attribute (a run directory) exists on rank 0 only.

    Assigning a run directory on another rank stores None, so those ranks write nothing.
    """

    @property
    def run(self):
        """The run directory; None on ranks other than 0."""
        return self._run

    @run.setter
    def run(self, run):
        self._run = run if rank() == 0 else None
