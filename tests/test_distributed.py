"""Meta-gradients across processes: 2 gloo ranks on 127.0.0.1 against one process with the same meta-batch."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gtn_core.distributed import World

REPO = Path(__file__).resolve().parents[1]
RANK_SCRIPT = Path(__file__).with_name("distributed_rank.py")


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_ranks(world_size: int, *args, timeout_s: float = 60.0) -> list[subprocess.Popen]:
    """Start `world_size` processes of tests/distributed_rank.py as the ranks of one gloo group on 127.0.0.1."""
    port = free_port()
    processes = []
    for rank in range(world_size):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "OMP_NUM_THREADS": "1",
               "GTN_DIST_TIMEOUT_S": str(timeout_s)}
        processes.append(subprocess.Popen([sys.executable, str(RANK_SCRIPT), *map(str, args)], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def test_a_world_splits_the_meta_batch_among_its_ranks_and_refuses_a_remainder():
    assert [list(World(rank, 2).members(4)) for rank in (0, 1)] == [[0, 1], [2, 3]]
    assert list(World().members(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="meta_batch=3 on 2 ranks: expected a multiple of the number of ranks"):
        World(1, 2).members(3)


def test_a_collective_timeout_that_is_not_a_positive_number_is_named():
    from gtn_core.distributed import collective_timeout

    assert collective_timeout("30") == 30.0
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ValueError, match=f"GTN_DIST_TIMEOUT_S='{bad}': expected a positive number of seconds"):
            collective_timeout(bad)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint_unroll"])
def test_two_gloo_ranks_end_with_the_teacher_of_one_process_with_meta_batch_two(tmp_path, float64, checkpoint):
    from distributed_rank import train_tiny

    ranks = launch_ranks(2, "train", tmp_path, 2, 3, int(checkpoint))
    for process in ranks:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, out + err
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: float sums then run in the same order
    try:
        single = train_tiny(meta_batch=2, outer_steps=3, checkpoint=checkpoint)
    finally:
        torch.set_num_threads(threads)
    states = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    for name, value in states[0]["teacher"].items():
        assert torch.equal(states[1]["teacher"][name], value), f"ranks disagree on {name}"
        torch.testing.assert_close(value, single["teacher"][name], rtol=1e-10, atol=1e-13)
    assert states[0]["losses"] == states[1]["losses"]
    assert states[0]["losses"] == pytest.approx(single["losses"], rel=1e-10)


def test_a_rank_that_dies_stops_the_other_with_an_error_within_the_timeout(tmp_path):
    ranks = launch_ranks(2, "train", tmp_path, 2, 100_000, timeout_s=30)  # far more steps than the test waits
    deadline = time.monotonic() + 120
    while not (tmp_path / "rank1.started").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    ranks[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    out, err = ranks[0].communicate(timeout=90)
    ranks[1].communicate()
    assert time.monotonic() - killed < 60, "the surviving rank should stop well within its 30 s timeout"
    assert ranks[0].returncode != 0
    assert "rank 0 of 2:" in err and "another rank is gone or stuck" in err, err[-2000:]


def _torchrun(store: Path, *updates: str, ranks: int = 2) -> subprocess.Popen:
    env = {**os.environ, "GTN_RUNS_DIR": str(store), "OMP_NUM_THREADS": "1"}
    env.pop("GTN_MONGO_URL", None)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             str(ranks), "experiments/mnist_experiment.py", "with", "smoke", "progress=False",
                             *updates], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _teacher(store: Path, run_id: str) -> dict:
    return torch.load(store / run_id / "teacher.pt", weights_only=False)["state_dict"]


@pytest.mark.usefixtures("mnist_ready")
def test_torchrun_records_one_run_that_matches_one_process_and_resumes_after_sigterm(tmp_path, file_store):
    from experiments import mnist_experiment
    from tracking.stores import FileStore

    whole = _torchrun(tmp_path / "ranks", "meta_batch=2")
    out, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, out + err
    (run,) = FileStore(tmp_path / "ranks").records()  # rank 0 records the run, rank 1 nothing
    assert (run.status, run.config["meta_batch"]) == ("COMPLETED", 2)
    assert FileStore(tmp_path / "ranks").info(run.run_id)["ranks"] == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False, "meta_batch": 2})
    finally:
        torch.set_num_threads(threads)
    ranked = _teacher(tmp_path / "ranks", run.run_id)
    for name, value in _teacher(file_store, str(single._id)).items():
        torch.testing.assert_close(ranked[name], value, rtol=1e-4, atol=1e-5)

    store = tmp_path / "stopped"
    stopped = _torchrun(store, "meta_batch=2", "outer_steps=100")
    deadline = time.monotonic() + 300
    while not (store / "1" / "training.pt").exists() and time.monotonic() < deadline and stopped.poll() is None:
        time.sleep(0.2)
    stopped.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode != 0, out + err
    (interrupted,) = FileStore(store).records()
    assert interrupted.status == "INTERRUPTED", err[-3000:]
    resumed = _torchrun(store, "meta_batch=2", "outer_steps=100", "resume_from=1")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out + err
    assert [r.status for r in FileStore(store).records()] == ["INTERRUPTED", "COMPLETED"]


@pytest.mark.usefixtures("mnist_ready")
def test_run_tasks_runs_a_cell_on_two_ranks_which_a_one_process_invocation_counts_as_done(tmp_path, mongo_base):
    from tracking.stores import FileStore, MongoStore

    def study(*args):
        env = {**os.environ, "GTN_RUNS_DIR": str(tmp_path)}
        return subprocess.run([sys.executable, "experiments/run_tasks.py", "--profile", "smoke", "--only", "c",
                               "--variants", "learned", "--no-ablation", "--workers", "1", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)

    refused = study("--ranks", "2")
    assert refused.returncode != 0 and "cell 'c learned s0' has meta_batch=1; expected a multiple" in refused.stderr
    assert not tmp_path.exists() or not FileStore(tmp_path).records(missing_ok=True)
    url = f"{mongo_base}/ranks"
    ranked = study("--ranks", "2", "--meta-batch", "2", "--mongo", url)
    assert ranked.returncode == 0, ranked.stdout + ranked.stderr
    (run,) = FileStore(tmp_path).records()
    mongo = MongoStore(url)
    (logged,) = mongo.records()  # rank 0 alone reports to MongoDB too
    assert (logged.file_store_id, logged.status, mongo.info(logged.run_id)["ranks"]) == (run.run_id, "COMPLETED", 2)
    mongo.close()
    assert (run.status, run.config["meta_batch"], FileStore(tmp_path).info(run.run_id)["ranks"]) == ("COMPLETED", 2, 2)
    assert re.search(rf"c learned s0 +COMPLETED +{run.run_id} ", ranked.stdout), ranked.stdout
    again = study("--meta-batch", "2")
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr


@pytest.mark.usefixtures("mnist_ready")
def test_sigterm_to_a_study_on_ranks_reaches_the_ranks_which_checkpoint_and_end_interrupted(tmp_path):
    from tracking.stores import FileStore

    env = {**os.environ, "GTN_RUNS_DIR": str(tmp_path)}
    env.pop("GTN_MONGO_URL", None)
    study = subprocess.Popen([sys.executable, "experiments/run_tasks.py", "--profile", "smoke", "--only", "c",
                              "--variants", "learned", "--no-ablation", "--workers", "1", "--ranks", "2",
                              "--meta-batch", "2", "--outer-steps", "400"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("*/training.pt")) and time.monotonic() < deadline and study.poll() is None:
        time.sleep(0.5)
    assert list(tmp_path.glob("*/training.pt")), "the cell should have checkpointed"
    sent = time.monotonic()
    study.send_signal(signal.SIGTERM)
    out, err = study.communicate(timeout=120)
    assert time.monotonic() - sent < 60 and study.returncode == 1, out + err
    assert "INTERRUPTED" in out and "stopped by a signal" in out, out
    assert [run.status for run in FileStore(tmp_path).records()] == ["INTERRUPTED"]
