"""Training survives schedulers, kills and restarts (issue 10), with real processes, real
signals and real file systems: signals to the whole process group (single process, loader
workers, torchrun with 2 CPU processes), the run-folder lock and kill -9, best.pt-only and
damaged checkpoints, settings changed on resume, a full disk (a small tmpfs in a user+mount
namespace when ``unshare`` works, else an injected ENOSPC at the write), damaged feature
stores, and the plain console output a batch job gets.

A resumed run is compared with one uninterrupted run (``reference``): per-step losses and the
final weights must agree to 1e-6.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from neurotts import checkpoint as ckpt
from neurotts.cli import app
from neurotts.training.errors import TrainingError
from neurotts.training.logging import read_train_log
from neurotts.training.loop import cpu_warning, loader_workers, train
from neurotts.training.stopping import StopRequest
from tests.test_loader import write_store
from tests.test_training import assert_runs_equal, config, run, torchrun

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
STEPS = 12  # the uninterrupted reference run
# Checkpoints only when stopped and at the end; one line per step in train_log.jsonl. Batches
# of one: 9 per epoch, so that loader workers are alive (not between epochs) when signalled.
COMMON = ["trainer.log_every=1", "trainer.val_every=4", "trainer.checkpoint_every=1000",
          "trainer.checkpoint_every_minutes=0", "trainer.batch_size=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reliab") / "store"
    write_store(root, n=12)
    return root


@pytest.fixture(scope="module")
def reference(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run(config(store, run_dir, *COMMON, f"trainer.max_steps={STEPS}"))
    return run_dir


def cli(store: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "neurotts.cli", "train", "experiment=tiny",
            f"data.features={store}", f"run.dir={run_dir}", *overrides]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """A process group of its own (like a batch job or a terminal's foreground job), with its
    output in a file (a pipe nobody reads could block it; and no terminal: plain lines)."""
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                start_new_session=True)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "train_log.jsonl"
    if not path.is_file():
        return 0
    return sum('"train/loss"' in line for line in path.read_text().splitlines())


def wait_for_steps(proc: subprocess.Popen, run_dir: Path, n: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while logged_steps(run_dir) < n:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no training progress"
        time.sleep(0.05)


def stopped_at(text: str, sig: signal.Signals, run_dir: Path) -> int:
    """The step of 'stopped by SIG after step N; checkpoint PATH' (checked to exist)."""
    match = re.search(rf"stopped by {sig.name} after step (\d+); checkpoint (\S+);", text)
    assert match, text[-3000:]
    step = int(match.group(1))
    assert Path(match.group(2)) == run_dir / "checkpoints" / f"step_{step:08d}.pt"
    assert ckpt.load_checkpoint(match.group(2))["step"] == step
    return step


# ------------------------------------------------------------------------------ signals


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1],
                         ids=lambda s: s.name)
def test_signal_to_the_process_group_stops_with_a_checkpoint_and_resumes_exactly(
        store: Path, reference: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """`timeout`, `kill -- -PGID`, Slurm and a terminal signal every process of the job,
    loader workers included: the run stops after the current step with a checkpoint of it,
    exits 128+signal without a traceback, and the rerun finishes as if never stopped."""
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    proc = start(cli(store, run_dir, *COMMON, "trainer.max_steps=100000", "data.num_workers=2"), log)
    wait_for_steps(proc, run_dir, 3, log)
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=120) == 128 + sig, log.read_text()[-3000:]
    text = log.read_text()
    step = stopped_at(text, sig, run_dir)
    assert 3 <= step < STEPS, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert not (run_dir / "train.lock").exists()  # released on the way out
    # No terminal: plain progress lines, and a summary at the end.
    assert re.search(r"^step 2/100000  loss \d+\.\d+ \(mel_before", text, re.M), text[:2000]
    assert re.search(rf"^summary: step {step} of 100000; ", text, re.M), text[-2000:]
    summary, out = run(config(store, run_dir, *COMMON, f"trainer.max_steps={STEPS}"))
    assert summary.resumed_from == step and f"resumed from step {step}" in out
    assert_runs_equal(reference, run_dir, STEPS)
    print(f"REPORT {sig.name} to the process group: exit {proc.returncode}, checkpoint of step "
          f"{step}, resumed from step {summary.resumed_from}, equal to the uninterrupted run")


@pytest.mark.slow
def test_torchrun_stopped_by_sigterm_or_killed_resumes_exactly(store: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gradient accumulation over 2 batches, time-based
    checkpoints every step or so). SIGTERM to torchrun's process group (torchrun forwards it
    to its workers, which run in sessions of their own): the ranks agree on one step, rank 0
    writes one checkpoint and prints one message. Then kill -9 of torchrun's group: the
    kernel sends each orphaned worker SIGTERM and they stop the same way. Resuming under
    torchrun equals the uninterrupted 2-process run."""
    steps = 10
    args = ["experiment=tiny", f"data.features={store}", "trainer.batch_size=2",
            "trainer.grad_accum=2", "trainer.log_every=1", "trainer.val_every=3",
            "trainer.checkpoint_every=1000", "trainer.checkpoint_every_minutes=0.002"]
    a, b = tmp_path / "a", tmp_path / "b"
    proc = torchrun(2, *args, f"run.dir={a}", f"trainer.max_steps={steps}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("training tacotron2") == 1 and "2 x cpu" in proc.stderr
    saved = ckpt.load_checkpoint(a / "checkpoints" / f"step_{steps:08d}.pt")
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    assert not torch.equal(saved["rng"][0]["torch"], saved["rng"][1]["torch"])  # per-rank streams
    assert len(list((a / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert logged_steps(a) == steps  # one writer: each step logged once

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "neurotts.cli", "train", *args, f"run.dir={b}", "trainer.max_steps=100000"]
    previous = 0
    for sig in (signal.SIGTERM, signal.SIGKILL):
        log = tmp_path / f"b-{sig.name}.log"
        proc = start(cmd, log)
        wait_for_steps(proc, b, previous + 2, log)
        os.killpg(proc.pid, sig)
        torchrun_rc = proc.wait(timeout=120)  # torchrun's own: 1 after SIGTERM, -9 after kill -9
        deadline = time.monotonic() + 120  # after kill -9 the workers finish on their own
        while "stopped by SIGTERM" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        text = log.read_text()
        assert text.count("stopped by SIGTERM after step") == 1, text[-3000:]
        step = stopped_at(text, signal.SIGTERM, b)
        assert previous + 2 <= step < steps, text[-2000:]
        assert not re.search(r'File ".*neurotts/', text), text[-3000:]  # torchrun's traceback only
        assert ckpt.load_checkpoint(b / "checkpoints" / f"step_{step:08d}.pt")["world_size"] == 2
        print(f"REPORT torchrun, {sig.name} to its process group: torchrun exit {torchrun_rc}, "
              f"workers stopped with a checkpoint of step {step}")
        previous = step

    proc = torchrun(2, *args, f"run.dir={b}", f"trainer.max_steps={steps}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from step {previous}" in proc.stderr
    assert_runs_equal(a, b, steps)
    print(f"REPORT torchrun resumed from step {previous}, equal to the uninterrupted 2-process run")


def test_repeated_copies_of_a_signal_are_one_request() -> None:
    """SIGTERM twice (the group's copy and torchrun's) and a SIGUSR1 after it: one request,
    no abort; the handlers are put back afterwards."""
    stop = StopRequest(announce=False)
    with stop:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGUSR1):
            os.kill(os.getpid(), sig)
    assert stop.signal == signal.SIGTERM and stop.number == 15
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_loader_workers_ignore_group_signals_but_not_their_parent(tmp_path: Path) -> None:
    """A worker survives SIGTERM/SIGINT/SIGUSR1 from another process (what a group signal
    is), and still quits when its parent terminates it: multiprocessing does that at exit
    for a worker left running, which would otherwise wait forever."""
    from torch.utils.data import DataLoader

    from neurotts.training.stopping import worker_init

    loader = DataLoader(list(range(64)), batch_size=1, num_workers=1, worker_init_fn=worker_init)
    batches = iter(loader)
    next(batches)
    worker = batches._workers[0]
    for sig in ("TERM", "INT", "USR1"):
        subprocess.run(["kill", f"-{sig}", str(worker.pid)], check=True)  # not the parent
    time.sleep(0.5)
    assert worker.is_alive() and next(batches) is not None
    worker.terminate()  # SIGTERM from the parent
    worker.join(timeout=10)
    assert worker.exitcode == 0
    del batches


WORKERS_STARTING = """
import signal, sys, time
from torch.utils.data import DataLoader
from neurotts.training.stopping import start_workers, worker_init
got = []
signal.signal(signal.SIGTERM, lambda sig, frame: got.append(sig))
def slow_init(worker_id):
    time.sleep(1.5)  # the group's signal arrives now, before the worker has set itself up
    worker_init(worker_id)
loader = DataLoader(list(range(8)), batch_size=2, num_workers=2, worker_init_fn=slow_init)
batches = start_workers(loader) if sys.argv[1] == "held" else iter(loader)
print("started", flush=True)
try:
    print("batches", len(list(batches)), "sigterm", len(got), flush=True)
except RuntimeError as error:
    print("failed", error, flush=True)
"""


@pytest.mark.parametrize("how", ["held", "plain"])
def test_a_group_signal_while_loader_workers_start_does_not_kill_them(how: str) -> None:
    """Workers start at every epoch and validation: a group SIGTERM that arrives before a
    new worker has run worker_init waits (held across the start) instead of killing it.
    The plain iter(loader) shows the failure this prevents."""
    proc = subprocess.Popen([sys.executable, "-c", WORKERS_STARTING, how], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "started"
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    if how == "held":
        assert out.strip() == "batches 4 sigterm 1", out
    else:
        assert out.startswith("failed DataLoader worker"), out  # killed / exited unexpectedly


# ------------------------------------------------------------------------------ lock


@pytest.mark.slow
def test_one_run_per_folder_and_a_killed_holder_leaves_it_unlocked(store: Path,
                                                                   tmp_path: Path) -> None:
    """A second `train` on a folder in use is refused with one line naming the holder and
    touches nothing; kill -9 of the holder releases the folder, and time-based checkpoints
    (checkpoint_every_minutes) mean the kill lost almost nothing."""
    run_dir, log = tmp_path / "run", tmp_path / "holder.log"
    holder = start(cli(store, run_dir, "trainer.max_steps=100000", "trainer.log_every=1",
                       "trainer.checkpoint_every=100000", "trainer.checkpoint_every_minutes=0.002"),
                   log)
    try:
        wait_for_steps(holder, run_dir, 2, log)
        before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("config.yaml")}
        second = subprocess.run(cli(store, run_dir, "trainer.max_steps=100000", "trainer.seed=99"),
                                capture_output=True, text=True, env=ENV, timeout=240)
        assert second.returncode == 1, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, second.stderr
        assert (f"{run_dir} is in use by another training run: pid {holder.pid} on host "
                f"{socket.gethostname()}") in lines[0]
        assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("config.yaml")} == before
        assert holder.poll() is None  # the holder was not disturbed
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    assert (run_dir / "train.lock").is_file()  # left behind by kill -9, but not locked
    newest = ckpt.CheckpointManager(run_dir / "checkpoints", 3).candidates()[0]
    step = ckpt.load_checkpoint(newest)["step"]
    assert step >= 1  # written by time, not by step count
    summary, out = run(config(store, run_dir, f"trainer.max_steps={step + 1}"))
    assert summary.resumed_from == step and summary.step == step + 1
    assert f"taken over from pid {holder.pid}" in out
    print(f"REPORT second run on a locked folder: exit {second.returncode}; holder killed with -9 "
          f"at a time-based checkpoint of step {step}; next run resumed from step {step}")
    assert not (run_dir / "train.lock").exists()


def test_lock_file_left_by_another_host_is_taken_with_a_warning(tmp_path: Path) -> None:
    """flock is only as good as the file system's locking: a lock file that another host
    left behind (NFS without lock support, or a crash there) gets a warning, not a refusal;
    two locks on one folder in one host are refused, and the second names the first."""
    import json

    from neurotts.training.rundir import RunLock

    (tmp_path / "train.lock").write_text(json.dumps({"pid": 4242, "host": "elsewhere",
                                                     "since": "2025-01-01 00:00:00"}))
    with RunLock(tmp_path) as lock:
        assert "was left by pid 4242 on elsewhere" in lock.notes[0]
        assert lock.notes[0].startswith("warning:") and "nolock" in lock.notes[0]
        with pytest.raises(TrainingError, match=rf"pid {os.getpid()} on host {socket.gethostname()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / "train.lock").exists()
    with RunLock(tmp_path) as lock:
        assert lock.notes == []


# ------------------------------------------------------------------------------ checkpoints


def test_best_pt_alone_is_resumed_from_and_not_overwritten(store: Path, reference: Path,
                                                          tmp_path: Path) -> None:
    """Periodic checkpoints deleted: the rerun resumes from best.pt (saying so) instead of
    starting over, continues exactly, and best.pt only improves."""
    run_dir = tmp_path / "run"
    run(config(store, run_dir, *COMMON, "trainer.max_steps=8"))
    best = ckpt.load_checkpoint(run_dir / "checkpoints" / "best.pt")
    for path in (run_dir / "checkpoints").glob("step_*.pt"):
        path.unlink()
    summary, out = run(config(store, run_dir, *COMMON, f"trainer.max_steps={STEPS}"))
    assert summary.resumed_from == best["step"] > 0
    assert f"resumed from step {best['step']} ({run_dir / 'checkpoints' / 'best.pt'})" in out
    assert ckpt.load_checkpoint(run_dir / "checkpoints" / "best.pt")["val_loss"] <= best["val_loss"]
    assert_runs_equal(reference, run_dir, STEPS)
    print(f"REPORT only best.pt: resumed from step {summary.resumed_from}, equal to uninterrupted")


def test_damaged_newest_checkpoints_are_named_and_skipped(store: Path, reference: Path,
                                                          tmp_path: Path) -> None:
    """The newest step file is random bytes and best.pt has a few damaged bytes inside a
    tensor (torch.load alone would load it): both are named, set aside, and the run
    continues exactly from the next older one."""
    run_dir = tmp_path / "run"
    run(config(store, run_dir, *COMMON, "trainer.max_steps=7", "trainer.checkpoint_every=3",
               "trainer.keep_last=5", "trainer.val_every=100"))  # best.pt: step 7
    folder = run_dir / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "step_00000003.pt",
                                                        "step_00000006.pt", "step_00000007.pt"]
    (folder / "step_00000007.pt").write_bytes(os.urandom(4096))
    data = bytearray((folder / "best.pt").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = os.urandom(64)
    (folder / "best.pt").write_bytes(bytes(data))
    summary, out = run(config(store, run_dir, *COMMON, f"trainer.max_steps={STEPS}"))
    assert summary.resumed_from == 6
    assert f"skipped {folder / 'step_00000007.pt'}: damaged or not a checkpoint" in out
    assert re.search(rf"skipped {re.escape(str(folder / 'best.pt'))}: damaged checkpoint \(\S+ fails "
                     "its checksum\\)", out), out
    assert (folder / "step_00000007.pt.damaged").is_file() and (folder / "best.pt.damaged").is_file()
    assert "weights_only" not in out
    assert_runs_equal(reference, run_dir, STEPS)
    print(f"REPORT damaged step 7 and best.pt: resumed from step {summary.resumed_from}, equal")


def test_resume_from_an_older_checkpoint_sets_the_newer_ones_aside(store: Path,
                                                                   tmp_path: Path) -> None:
    """trainer.resume=PATH to an older checkpoint of the folder: the checkpoints after it
    (best.pt included) are kept as NAME.superseded, so a later resume=auto stays on the
    line this run continues, not the abandoned one. A checkpoint of another folder cannot
    be continued in a folder that has checkpoints of its own."""
    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    run(config(store, run_dir, "trainer.max_steps=4", "trainer.checkpoint_every=2",
               "trainer.keep_last=5", "trainer.val_every=100"))  # step 2, step 4, best (4)
    summary, out = run(config(store, run_dir, "trainer.max_steps=3", "trainer.val_every=100",
                              f"trainer.resume={folder / 'step_00000002.pt'}"))
    assert summary.resumed_from == 2 and summary.step == 3
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt", "best.pt.superseded", "step_00000002.pt", "step_00000003.pt",
        "step_00000004.pt.superseded"]  # best.pt: this run's own, at step 3
    assert f"{folder / 'step_00000004.pt'} (step 4) is newer than the chosen checkpoint" in out
    summary, _ = run(config(store, run_dir, "trainer.max_steps=4"))
    assert summary.resumed_from == 3
    other = tmp_path / "other"
    run(config(store, other, "trainer.max_steps=1"))
    with pytest.raises(TrainingError, match="would mix two runs"):
        run(config(store, run_dir, f"trainer.resume={other / 'checkpoints' / 'step_00000001.pt'}"))


def test_no_usable_checkpoint_never_starts_over(store: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(config(store, run_dir, "trainer.max_steps=2", "trainer.val_every=2"))
    for path in (run_dir / "checkpoints").iterdir():
        path.write_bytes(b"")
    with pytest.raises(TrainingError, match="no usable checkpoint in .*move them away"):
        run(config(store, run_dir, "trainer.max_steps=4"))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.pt", "step_00000002.pt"]  # nothing set aside or written by a refused start


def test_unloadable_checkpoint_is_one_line_without_weights_only_advice(tmp_path: Path) -> None:
    """A pickle that would run code when unpickled is refused (and nothing runs); torch's
    advice to pass weights_only=False is never shown."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "x": Payload()}, evil)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_checkpoint(evil)
    message = str(err.value)
    assert message.startswith(f"{evil}: holds objects other than tensors") and "\n" not in message
    assert "weights_only" not in message and not marker.exists()
    for junk in (b"", os.urandom(3000), b"PK\x03\x04" + os.urandom(100)):
        evil.write_bytes(junk)
        with pytest.raises(ckpt.CheckpointError) as err:
            ckpt.load_checkpoint(evil)
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_best_pt_from_another_history_is_kept(store: Path, tmp_path: Path) -> None:
    """best.pt is replaced only by a run that continued from the state it was chosen in:
    a best.pt that comes from another run's history stays as it is."""
    other, run_dir = tmp_path / "other", tmp_path / "run"
    run(config(store, other, "trainer.max_steps=2", "trainer.val_every=2"))
    run(config(store, run_dir, "trainer.max_steps=4", "trainer.val_every=2"))
    foreign = (other / "checkpoints" / "best.pt").read_bytes()
    (run_dir / "checkpoints" / "best.pt").write_bytes(foreign)
    _, out = run(config(store, run_dir, "trainer.max_steps=8", "trainer.val_every=2"))
    assert "resumed from step 4" in out
    assert "best.pt is not from this run's history" in out
    assert (run_dir / "checkpoints" / "best.pt").read_bytes() == foreign


# ------------------------------------------------------------------------------ settings


def test_lr_and_batch_size_change_on_resume_are_applied_and_printed(store: Path,
                                                                    tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    fixed = ["trainer.log_every=1", "trainer.val_every=100", "trainer.schedule.warmup_steps=0"]
    run(config(store, run_dir, *fixed, "trainer.max_steps=4"))
    _, out = run(config(store, run_dir, *fixed, "trainer.max_steps=6", "trainer.optimizer.lr=5e-4"))
    assert "trainer.optimizer.lr 0.002 -> 0.0005 from step 4" in out
    assert "trainer.max_steps 4 -> 6 from step 4" in out
    log = read_train_log(run_dir / "train_log.jsonl")
    assert log[4]["train/lr"] == pytest.approx(2e-3) and log[5]["train/lr"] == pytest.approx(5e-4)
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / "step_00000006.pt")
    assert [g["lr"] for g in saved["optimizer"]["param_groups"]] == pytest.approx([5e-4, 5e-4])
    assert saved["config"]["trainer"]["optimizer"]["lr"] == 5e-4
    assert "lr: 0.0005" in (run_dir / "config.yaml").read_text()
    # A different batch size cuts different batches: they start with the next epoch.
    _, out = run(config(store, run_dir, *fixed, "trainer.max_steps=7", "trainer.optimizer.lr=5e-4",
                        "trainer.batch_size=2"))
    assert "trainer.batch_size 4 -> 2 from step 6" in out
    resumed = ckpt.load_checkpoint(run_dir / "checkpoints" / "step_00000006.pt")
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / "step_00000007.pt")
    if resumed["global_batches_in_epoch"]:  # mid-epoch at step 6
        assert "continuing with epoch" in out
        assert saved["epoch"] == resumed["epoch"] + 1 and saved["global_batches_in_epoch"] == 1


def test_refused_resume_leaves_the_run_folder_untouched(store: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(config(store, run_dir, "trainer.max_steps=2", "trainer.val_every=2"))
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in run_dir.rglob("*")}
    config_text = (run_dir / "config.yaml").read_text()
    for change in ("model.encoder.lstm_dim=48", "trainer.seed=99", "data.normalize_mels=false"):
        with pytest.raises(TrainingError) as err:
            run(config(store, run_dir, "trainer.max_steps=4", change))
        key, value = change.split("=")
        assert f"{key}: " in str(err.value) and "cannot change on resume" in str(err.value)
    assert (run_dir / "config.yaml").read_text() == config_text
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in run_dir.rglob("*")} == before


# ------------------------------------------------------------------------------ disk


def namespace_tmpfs_works(tmp_path: Path) -> bool:
    """Can this user mount a tmpfs in a private user+mount namespace (`unshare -rm`)?"""
    if shutil.which("unshare") is None:
        return False
    mnt = tmp_path / "probe"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


DISK_SCRIPT = r"""
mount -t tmpfs -o size=$SIZE tmpfs "$MNT" || exit 99
"$PY" -m neurotts.cli train $ARGS run.dir="$MNT/run" > "$OUT/err1" 2>&1; echo $? > "$OUT/rc1"
ls -a "$MNT/run" "$MNT/run/checkpoints" > "$OUT/ls1"
mount -o remount,size=64m "$MNT"  # space freed
"$PY" -m neurotts.cli train $ARGS run.dir="$MNT/run" > "$OUT/err2" 2>&1; echo $? > "$OUT/rc2"
cp -r "$MNT/run" "$OUT/run"
mount -t tmpfs -o ro,size=1m tmpfs "$RO"
"$PY" -m neurotts.cli train $ARGS run.dir="$RO/run" > "$OUT/err3" 2>&1; echo $? > "$OUT/rc3"
"""


@pytest.mark.slow
def test_disk_full_is_one_line_leaves_nothing_half_written_and_resumes_exactly(
        store: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmpfs with room for one checkpoint: the second one fails with one line naming the
    file and the newest intact checkpoint, no .part is left, and after the space is freed the
    same command resumes exactly. A read-only run.dir is one line at start."""
    overrides = [*COMMON, f"trainer.max_steps={STEPS}", "trainer.checkpoint_every=4",
                 "trainer.val_every=100", "trainer.keep_last=1"]
    if not namespace_tmpfs_works(tmp_path):
        return disk_full_injected(store, reference, tmp_path, overrides, monkeypatch)
    size = (reference / "checkpoints" / f"step_{STEPS:08d}.pt").stat().st_size
    out, mnt, ro = tmp_path / "out", tmp_path / "mnt", tmp_path / "ro"
    for d in (out, mnt, ro):
        d.mkdir()
    args = " ".join(["experiment=tiny", f"data.features={store}", *overrides])
    env = {**ENV, "SIZE": str(int(size * 1.6)), "MNT": str(mnt), "RO": str(ro), "OUT": str(out),
           "ARGS": args, "PY": sys.executable}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", DISK_SCRIPT], env=env, timeout=500,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    err1 = (out / "err1").read_text()
    assert (out / "rc1").read_text().strip() == "1", err1
    assert (f"error: disk full while writing {mnt}/run/checkpoints/step_00000008.pt; the newest "
            f"intact checkpoint is step 4 ({mnt}/run/checkpoints/step_00000004.pt)") in err1
    assert "Traceback" not in err1
    assert ".part" not in (out / "ls1").read_text()
    err2 = (out / "err2").read_text()
    assert (out / "rc2").read_text().strip() == "0", err2
    assert "resumed from step 4" in err2
    assert_runs_equal(reference, out / "run", STEPS)
    err3 = (out / "err3").read_text()
    assert (out / "rc3").read_text().strip() == "2", err3
    assert err3.strip() == f"error: run.dir={ro}/run: cannot be created (Read-only file system)"
    print(f"REPORT disk full (tmpfs): exit {(out / 'rc1').read_text().strip()}, newest intact "
          f"step 4; after freeing space exit {(out / 'rc2').read_text().strip()}, resumed from "
          f"step 4, equal; read-only run.dir exit {(out / 'rc3').read_text().strip()}")


def disk_full_injected(store: Path, reference: Path, tmp_path: Path, overrides: list[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No namespaces here: ENOSPC injected at the fsync of step 8's .part (after its bytes
    were written), the real clean-up path."""
    run_dir = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("step_00000008.pt.part"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        with pytest.raises(TrainingError) as err:
            run(config(store, run_dir, *overrides))
    assert str(err.value).startswith(
        f"disk full while writing {run_dir}/checkpoints/step_00000008.pt; the newest intact "
        "checkpoint is step 4")
    assert not list(run_dir.rglob("*.part"))
    summary, _ = run(config(store, run_dir, *overrides))
    assert summary.resumed_from == 4
    assert_runs_equal(reference, run_dir, STEPS)
    print("REPORT disk full (injected ENOSPC): one line, resumed from step 4, equal")


def test_full_disk_under_the_log_stops_the_run_with_one_line(store: Path, tmp_path: Path) -> None:
    """train_log.jsonl on /dev/full (every write: ENOSPC): the run stops at the step boundary
    after the failed write, naming the file and the checkpoint to resume from."""
    run_dir = tmp_path / "run"
    run(config(store, run_dir, "trainer.max_steps=2", "trainer.val_every=2"))
    log = run_dir / "train_log.jsonl"
    log.unlink()
    log.symlink_to("/dev/full")
    with pytest.raises(TrainingError) as err:
        run(config(store, run_dir, "trainer.max_steps=6", "trainer.log_every=1"))
    assert str(err.value) == (f"disk full while writing {log}; the newest intact checkpoint is step "
                              f"2 ({run_dir / 'checkpoints' / 'step_00000002.pt'}); run the same "
                              "command again to resume once it is fixed")


def test_run_dir_under_a_file_is_one_line(store: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    result = CliRunner().invoke(app, ["train", "experiment=tiny", f"data.features={store}",
                                      f"run.dir={tmp_path / 'afile' / 'run'}"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: run.dir={tmp_path}/afile/run: cannot be created, "
                                     f"{tmp_path}/afile is a file")


# ------------------------------------------------------------------------------ feature files


def damaged_store(store: Path, dest: Path) -> Path:
    shutil.copytree(store, dest)
    return dest


def train_split_ids(store: Path) -> list[str]:
    from neurotts.data.store import FeatureStore

    return [u.id for u in FeatureStore(store).split("train")]


def test_missing_or_damaged_feature_files_are_one_line(store: Path, tmp_path: Path) -> None:
    """A deleted or truncated mel is named at start, before anything is written; one whose
    content is garbage is named when a loader worker reads it."""
    runner = CliRunner()
    copy = damaged_store(store, tmp_path / "store")
    first, second = train_split_ids(copy)[:2]
    (copy / "mels" / f"{first}.npy").unlink()
    result = runner.invoke(app, ["train", "experiment=tiny", f"data.features={copy}",
                                 f"run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {copy}/mels/{first}.npy is missing; run `neurotts "
                                    "prepare` again") and result.output.count("\n") == 1
    assert not (tmp_path / "run" / "config.yaml").exists()
    path = copy / "mels" / f"{second}.npy"
    path.write_bytes(path.read_bytes()[:200])
    result = runner.invoke(app, ["train", "experiment=tiny", f"data.features={copy}",
                                 f"run.dir={tmp_path / 'run'}"])
    assert f"{copy}/mels/{first}.npy is missing (and 1 more feature files" in result.output
    np.save(copy / "mels" / f"{first}.npy", np.load(store / "mels" / f"{first}.npy"))
    assert f"{path} is truncated" in runner.invoke(app, [
        "train", "experiment=tiny", f"data.features={copy}", f"run.dir={tmp_path / 'run'}"]).output
    path.write_bytes(b"\x00" * len((store / "mels" / f"{second}.npy").read_bytes()))
    result = runner.invoke(app, ["train", "experiment=tiny", f"data.features={copy}",
                                 f"run.dir={tmp_path / 'run'}", "trainer.max_steps=3",
                                 "data.num_workers=1"])
    assert result.exit_code == 2, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("error:"))
    assert line.startswith(f"error: {path}: feature file unreadable"), result.output
    assert "Traceback" not in result.output and "Caught" not in result.output


# ------------------------------------------------------------------------------ console


def test_plain_lines_without_a_terminal_and_no_bar_past_max_steps(store: Path,
                                                                  tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cores = len(os.sched_getaffinity(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, out = run(config(store, run_dir, "trainer.max_steps=4", "trainer.log_every=2",
                            "trainer.val_every=4", f"data.num_workers={cores + 2}"))
    assert f"data.num_workers={cores + 2} lowered to {cores}" in out
    assert not [w for w in caught if "worker" in str(w.message)]  # torch's too-many-workers
    assert re.search(r"^step 2/4  loss \d\.\d{4} \(mel_before \d\.\d{4}, mel_after .*\)  "
                     r"grad_norm \S+  lr \d\.\d\de-0\d  \d+\.\d\d steps/s  .*ETA \d+s$", out, re.M), out
    assert re.search(r"^step 4: validation loss \d\.\d{4} \(mel_before .*\)  \(new best\)$", out, re.M)
    assert re.search(rf"^summary: step 4 of 4; best validation loss \d\.\d{{4}} at step 4; "
                     rf"checkpoints: {run_dir}/checkpoints/step_00000004.pt, "
                     rf"{run_dir}/checkpoints/best.pt; wall time \d+s$", out, re.M), out
    assert "━" not in out  # no progress bar in a log file
    for terminal in (False, True):
        text = io.StringIO()
        train(config(store, run_dir, "trainer.max_steps=2"),
              Console(file=text, width=200, force_terminal=terminal))
        assert "already at step 4 >= trainer.max_steps=2; nothing to do" in text.getvalue()
        assert "4/2" not in text.getvalue() and "━" not in text.getvalue()


def test_paths_with_brackets_print_literally_and_resume(store: Path, tmp_path: Path) -> None:
    """Rich markup in a run folder's name ([red], [/x]) neither vanishes nor crashes, in
    progress, resume and error messages."""
    run_dir = tmp_path / "p[red]" / "r[/x]b"
    quoted = f"run.dir='{run_dir}'"
    runner = CliRunner()
    args = ["train", "experiment=tiny", f"data.features={store}", quoted, "trainer.val_every=2"]
    result = runner.invoke(app, [*args, "trainer.max_steps=2"])
    assert result.exit_code == 0, result.output
    assert f"{run_dir}/checkpoints/best.pt" in result.output
    result = runner.invoke(app, [*args, "trainer.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert f"resumed from step 2 ({run_dir}/checkpoints/step_00000002.pt)" in result.output
    result = runner.invoke(app, [*args, "trainer.max_steps=4", "model.encoder.lstm_dim=48"])
    assert result.exit_code == 1
    assert f"error: {run_dir}/checkpoints/step_00000003.pt: these settings differ" in result.output


def test_an_error_every_rank_hits_is_raised_as_such_off_rank_0() -> None:
    """A check every rank makes alike raising another layer's error: rank 0 raises it as
    it is (the CLI prints it), another rank as SharedError (every_rank: not printed again),
    with the same message and exit code."""
    from neurotts.data.store import StoreError
    from neurotts.training.distributed import DistEnv, raised_alike
    from neurotts.training.errors import SharedError

    for rank, expected in ((0, StoreError), (1, SharedError)):
        with pytest.raises(expected) as err, raised_alike(DistEnv(rank, rank, 2, torch.device("cpu"))):
            raise StoreError("features/x.npy: missing")
        assert str(err.value) == "features/x.npy: missing" and err.value.exit_code == 2
    assert SharedError("m", 2).every_rank and not StoreError.every_rank


def test_cpu_warning_and_loader_workers_capped_at_the_cores() -> None:
    from types import SimpleNamespace

    from neurotts.training.distributed import DistEnv

    cpu = DistEnv(0, 0, 1, torch.device("cpu"))
    big = SimpleNamespace(model=torch.nn.Linear(1000, 1000))  # 1.0M parameters
    small = SimpleNamespace(model=torch.nn.Linear(10, 10))
    assert "experiment=tiny" in cpu_warning(big, cpu)[0] and cpu_warning(small, cpu) == []
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(cores, cpu) == (cores, [])
    workers, notes = loader_workers(cores + 3, cpu)
    assert workers == cores
    assert notes == [f"data.num_workers={cores + 3} lowered to {cores}: the {cores} CPU cores available"]


@pytest.mark.parametrize("sig,says", [
    (signal.SIGTERM, "(another SIGTERM changes nothing; SIGKILL stops at once, without one)"),
    (signal.SIGUSR1, "(another SIGUSR1 changes nothing; SIGKILL stops at once, without one)"),
    (signal.SIGINT, "(Ctrl-C again stops at once, without one)"),
])
def test_stop_announcement_names_what_the_signal_allows(capsys, sig, says) -> None:
    """Only a second Ctrl-C aborts: after a SIGTERM the message does not offer Ctrl-C."""
    with StopRequest(announce=True):
        os.kill(os.getpid(), sig)
    err = capsys.readouterr().err.strip()
    assert err == f"{sig.name}: stopping after this step and saving a checkpoint {says}"


def test_batch_larger_than_the_train_split_is_noted() -> None:
    from neurotts.training.loop import batch_note

    assert batch_note(32, 328) == []
    assert batch_note(100000, 328) == [
        "note: trainer.batch_size asks for 100000 utterances per step, more than the train "
        "split's 328: each batch holds at most 328"]
