"""One rank of the distributed tests: `python tests/distributed_rank.py train OUT META_BATCH OUTER_STEPS [CHECKPOINT]`.

Joins the gloo group that MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE describe, meta-trains the tiny GTN of the
tests on synthetic data in float64 (with `checkpoint_unroll` when CHECKPOINT is 1) and saves its teacher state and
meta-losses to OUT/rank<r>.pt; OUT/rank<r>.started marks the first outer step done.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import tiny_config  # noqa: E402
from gtn_core.distributed import current_world, init_from_environment, leave_world  # noqa: E402
from gtn_core.meta import MetaTrainer, RealData  # noqa: E402
from gtn_core.teachers import GTN  # noqa: E402


def tiny_data() -> RealData:
    """64 synthetic 8x8 images of 3 classes, the same on every rank."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 8, 8, generator=generator) * 2 - 1
    labels = torch.randint(0, 3, (64,), generator=generator)
    return RealData(images, labels, images[:32], labels[:32])


def train_tiny(meta_batch: int, outer_steps: int, started: Path | None = None, checkpoint: bool = False) -> dict:
    """Meta-train the tiny GTN in this process's world; its teacher state and the meta-losses."""
    cfg = tiny_config(meta_batch=meta_batch, outer_steps=outer_steps, eval_every=outer_steps,
                      checkpoint_unroll=checkpoint)
    trainer = MetaTrainer(GTN(cfg), cfg, tiny_data(), current_world())
    trainer.synchronize()
    losses = []
    for record in trainer.records():
        losses.append(record.meta_loss)
        if started is not None and len(losses) == 1:
            started.touch()
    return {"teacher": trainer.teacher.state_dict(), "losses": losses}


def main(argv: list[str]) -> None:
    """Train as one rank and save the result."""
    _, out, meta_batch, outer_steps, *rest = argv
    torch.set_default_dtype(torch.float64)
    world = init_from_environment()  # $GTN_DIST_TIMEOUT_S
    out = Path(out)
    finished = False
    try:
        result = train_tiny(int(meta_batch), int(outer_steps), out / f"rank{world.rank}.started",
                            checkpoint=bool(rest and rest[0] == "1"))
        torch.save(result, out / f"rank{world.rank}.pt")
        finished = True
    finally:
        leave_world(finished)


if __name__ == "__main__":
    main(sys.argv[1:])
