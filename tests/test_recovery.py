"""Preemption and corruption: SIGTERM checkpoints the step it arrived in and exits 75; a corrupted newest
checkpoint is skipped with a warning naming it, kept aside, and the run continues from the previous one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpt_jax import loop

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


def _losses(workdir):
  return cli_utils.train_losses(workdir)


def _steps(workdir):
  return sorted(int(p.name) for p in Path(workdir, "checkpoints").iterdir() if p.name.isdigit())


def test_sigterm_checkpoints_the_current_step_and_resumes_exactly(tiny_config_factory, pretrained, tmp_path,
                                                                  monkeypatch):
  """The signal arrives while step 5's batch is being made (not a checkpoint step): step 5 is saved."""
  cli_utils.at_training_batch(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
  with pytest.raises(loop.Preempted, match="by signal at step 5"):
    loop.run(tiny_config_factory(), str(tmp_path))
  monkeypatch.undo()
  assert _steps(tmp_path)[-1] == 5
  assert [s for s, _ in _losses(tmp_path)] == list(range(1, 6))
  loop.run(tiny_config_factory(), str(tmp_path))
  assert _losses(tmp_path) == _losses(pretrained[0])


def test_a_signal_at_the_last_step_finishes_the_run_with_its_final_evaluation(tiny_config_factory, pretrained,
                                                                              tmp_path, monkeypatch):
  """A SIGTERM during the last step's batch: that step is evaluated and saved anyway, so the run finishes (no exit
  75) and its summary holds the final evaluation. And a run killed between its final checkpoint and summary.json
  reports the evaluation it made before it stopped, not an empty one."""
  finished = json.loads((pretrained[0] / "summary.json").read_text())
  cli_utils.at_training_batch(monkeypatch, finished["steps"], lambda: os.kill(os.getpid(), signal.SIGTERM))
  summary = loop.run(tiny_config_factory(), str(tmp_path / "a"))  # no Preempted
  assert summary["steps"] == finished["steps"] and summary["final"] == finished["final"]
  assert any(k.startswith("eval/") for k in summary["final"]), summary["final"]
  monkeypatch.undo()

  workdir = tmp_path / "b"
  shutil.copytree(pretrained[0], workdir)
  (workdir / "summary.json").unlink()  # killed after the final checkpoint, before summary.json
  summary = loop.run(tiny_config_factory(), str(workdir))
  assert summary["steps"] == finished["steps"] and summary["final"] == finished["final"]


@pytest.mark.slow
def test_sigterm_through_the_cli_exits_75_and_resumes_exactly(corpus_dir, tmp_path):
  env = cli_utils.cli_env(tmp_path, corpus_dir)
  workdir = tmp_path / "w"
  slow = ("--config.train.log_every_steps=1", "--config.train.total_tokens=25600")  # 100 steps
  proc = subprocess.Popen(cli_utils.train_cmd(workdir, *slow), env=env, cwd=cli_utils.REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:  # wait for training to be under way
    if metrics.exists() and len(_losses(workdir)) >= 3:
      break
    time.sleep(0.05)
  seen = max(s for s, _ in _losses(workdir))
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 75, err[-3000:]
  saved = _steps(workdir)[-1]
  # Metrics lag one step behind dispatch: at the signal, step seen+1 was at most running; it is the one saved.
  assert seen <= saved <= seen + 2, (seen, saved)
  assert max(s for s, _ in _losses(workdir)) == saved
  assert "checkpoint committed" in err and "Traceback" not in err
  resumed = cli_utils.run_cli(env, workdir, *slow)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  reference = cli_utils.run_cli(env, tmp_path / "reference", *slow)
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert _losses(workdir) == _losses(tmp_path / "reference")


def _largest_file(d: Path) -> Path:
  return max((p for p in d.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


CORRUPTIONS = {
    "truncated_tensor_file": lambda step: _largest_file(step / "params").write_bytes(
        _largest_file(step / "params").read_bytes()[:100]),
    "deleted_tensor_file": lambda step: _largest_file(step / "opt").unlink(),
    "deleted_commit_marker": lambda step: (step / "commit_success.txt").unlink(),
}


# A damaged tensor file fails one of Orbax's concurrent reads; the other reads are then never awaited, and their
# coroutines and event-loop callbacks are reported when collected. The restore fails cleanly, which is what is tested.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupted_latest_checkpoint_falls_back_and_continues(tiny_config_factory, pretrained, tmp_path, caplog,
                                                              how):
  workdir = tmp_path / "w"
  shutil.copytree(pretrained[0], workdir)
  for p in ("summary.json",):
    (workdir / p).unlink()
  steps = _steps(workdir)
  assert steps[-2:] == [16, 20], steps
  CORRUPTIONS[how](workdir / "checkpoints" / "20")
  with caplog.at_level(logging.WARNING):
    summary = loop.run(tiny_config_factory(), str(workdir))
  warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
  assert "restored step 16 after skipping" in warnings and "step 20" in warnings, warnings
  assert summary["steps"] == 20 and summary["scored_tokens"] == summary["tokens"]  # the redone steps counted once
  assert _losses(workdir) == _losses(pretrained[0])  # the 4 steps after 16 are redone exactly
  assert cli_utils.tensorboard_steps(workdir, "train/loss") == list(range(1, 21))  # steps 17-20 shown once
  kept = list((workdir / "checkpoints" / "unreadable").iterdir())  # nothing deleted: moved aside
  assert [p.name.split(".")[0] for p in kept] == ["20"]
  assert _steps(workdir)[-1] == 20


def test_sigkill_leaves_a_stale_lease_the_next_run_takes_over(tiny_config_factory, pretrained, corpus_dir, tmp_path,
                                                              caplog):
  """A CLI run resuming from step 8 is SIGKILLed once it trains: its lease record stays behind (its lock went with
  the process); the next run takes the lease over with a warning and resumes exactly."""
  workdir = tmp_path / "w"
  with pytest.raises(loop.Preempted):
    loop.run(tiny_config_factory(**{"train.stop_at_step": 8}), str(workdir))
  env = cli_utils.cli_env(tmp_path, corpus_dir, tokenizer=Path(pretrained[0]) / "tokenizer.model")
  proc = subprocess.Popen(cli_utils.train_cmd(workdir), env=env, cwd=cli_utils.REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None and max(s for s, _ in _losses(workdir)) <= 8:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  lease = json.loads((workdir / ".lease").read_text())
  assert lease["pid"] == proc.pid
  with caplog.at_level(logging.WARNING):
    summary = loop.run(tiny_config_factory(), str(workdir))
  assert f"took over the lease of {workdir}" in caplog.text and f"its process {proc.pid} is gone" in caplog.text
  assert summary["steps"] == 20
  assert _losses(workdir) == _losses(pretrained[0])
