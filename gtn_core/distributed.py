"""Meta-training spread over processes with torch.distributed: which learners a rank owns, and the collectives.

`meta_batch` counts the learners of one outer step over all ranks: with R ranks each owns meta_batch / R of them
(learner m keeps its own seeded stream wherever it runs), the ranks' gradients are summed by one all-reduce, and
every rank takes the same Adam step. So a run computes the same thing on 1 process or R ranks (up to the order
of a floating-point sum), and its config does not say how many ranks it ran on.

A single process is the world of one rank: every collective is then a no-op. Collectives fail after `timeout`
when a peer rank is gone (gloo reports a closed connection at once); `PeerLost` says which rank saw it and when.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_VARIABLE = "GTN_DIST_TIMEOUT_S"


class PeerLost(RuntimeError):
    """A collective failed: another rank died or stopped answering."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (rank 0 of 1 without torch.distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this rank records the run (rank 0)."""
        return self.rank == 0

    def members(self, meta_batch: int) -> range:
        """The learners of the meta-batch this rank runs; ValueError unless the ranks divide `meta_batch`."""
        if meta_batch % self.size:
            raise ValueError(f"meta_batch={meta_batch} on {self.size} ranks: expected a multiple of the number of "
                             f"ranks (meta_batch counts the learners of an outer step over all ranks)")
        share = meta_batch // self.size
        return range(self.rank * share, (self.rank + 1) * share)


def current_world() -> World:
    """The torch.distributed world when a process group is initialised, else the single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def collective_timeout(text: str | None = None) -> float:
    """Seconds a collective waits for the other ranks: $GTN_DIST_TIMEOUT_S, else DEFAULT_TIMEOUT_S."""
    text = os.environ.get(TIMEOUT_VARIABLE) if text is None else text
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r}: expected a positive number of seconds")
    return value


def init_from_environment(timeout_s: float | None = None) -> World:
    """Join the process group torchrun describes (gloo on CPU, nccl with CUDA), or stay a single process."""
    if launched_world_size() <= 1:
        return World()
    timeout_s = collective_timeout() if timeout_s is None else timeout_s
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return current_world()


def leave_world(finished: bool = False) -> None:
    """Leave the process group this process joined, if any, before the interpreter exits (left to exit, gloo can
    abort the process with "terminate called without an active exception"). `finished`: this rank's work ended
    without an error, so it first waits at a barrier for every rank to end too; a rank that tears its connections
    down while a peer is still in its last collective can abort that peer the same way. A failing rank leaves at
    once (its peers then fail their next collective within the timeout)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if finished:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: with CUDA and several ranks, the GPU of its LOCAL_RANK; else `device` itself."""
    if device.type != "cuda" or world.size == 1 or device.index is not None:
        return device
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _collective(world: World, what: str, operation):
    try:
        return operation()
    except (RuntimeError, dist.DistBackendError) as error:  # gloo: "Connection closed by peer", timeouts, ...
        raise PeerLost(f"rank {world.rank} of {world.size}: {what} failed, another rank is gone or stuck "
                       f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error


def sum_gradients(params: list[torch.Tensor], loss_sum: float, world: World) -> float:
    """Sum every parameter's .grad (None counts as zeros) and `loss_sum` over the ranks, in place; the summed loss.

    One all-reduce of one flat buffer; the same values then sit on every rank.
    """
    if world.size == 1:
        return loss_sum
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor([loss_sum], dtype=grads[0].dtype,
                                                                    device=grads[0].device)])
    _collective(world, "the meta-gradient all-reduce", lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
    offset = 0
    for param, grad in zip(params, grads):
        param.grad = flat[offset:offset + grad.numel()].view_as(grad).clone()
        offset += grad.numel()
    return flat[-1].item()


def any_rank(flag: bool, world: World) -> bool:
    """Whether `flag` is set on any rank (e.g. a stop signal received by one of them)."""
    if world.size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    _collective(world, "the stop-flag all-reduce", lambda: dist.all_reduce(value, op=dist.ReduceOp.MAX))
    return bool(value.item())


def broadcast_object(value, world: World):
    """`value` of rank 0, on every rank."""
    if world.size == 1:
        return value
    box = [value if world.is_main else None]
    _collective(world, "the broadcast from rank 0", lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def gather_objects(value, world: World) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    if world.size == 1:
        return [value]
    values = [None] * world.size
    _collective(world, "the gather of rank states", lambda: dist.all_gather_object(values, value))
    return values
