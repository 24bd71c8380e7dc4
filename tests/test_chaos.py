"""Chaos: the real CLI killed with SIGKILL at random moments (seeded), rerun until it finishes.

Every resumed run's `train/loss` sequence must equal an uninterrupted run's exactly, and after every kill
every committed checkpoint step must restore. Checkpoints are written every step (and the older ones
deleted), so kills land in saves, commits and deletions as well as in start-up and training.

Cost: each process is a warm start (~6 CPU-seconds, JAX's persistent compilation cache); two lanes of
workdirs run side by side on 2 cores.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

KILLS = 12
LANES = 2
SEED = 20240909
CHAOS = ("--config.train.checkpoint_every_tokens=256", "--config.train.log_every_steps=3")


class _Lane:
  """One workdir at a time: start, kill at a random moment (or let it finish), check, repeat."""

  def __init__(self, root, env, abstract, rng, train_seconds, budget):
    self.root, self.env, self.abstract, self.rng = root, env, abstract, rng
    self.train_seconds, self.budget = train_seconds, budget
    self.kills, self.processes, self.finished, self.problems, self.unreadable = 0, 0, [], [], []
    self.workdirs = []

  def _one(self, workdir, kill: bool) -> bool:
    """One process; True when it ran to the end. `kill`: SIGKILL it at a random moment."""
    proc = subprocess.Popen(cli_utils.train_cmd(workdir, *CHAOS), env=self.env, cwd=cli_utils.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    self.processes += 1
    lines, started = [], threading.Event()

    def read():
      for line in proc.stderr:
        lines.append(line)
        if line.startswith("model:"):  # start-up (imports, data, tokenizer) is over
          started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if kill:
      if self.rng.random() < 0.2:  # in start-up: imports, flags, tokenizer copy, config.json
        time.sleep(self.rng.uniform(0.0, 3.0))
      else:  # in training: steps, evals, async saves, commits, deletions of older steps
        started.wait(timeout=120)
        time.sleep(self.rng.uniform(0.0, 1.2 * self.train_seconds))
      if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    rc = proc.wait(timeout=300)
    reader.join(timeout=10)
    text = "".join(lines)
    if rc == -signal.SIGKILL:
      self.kills += 1
      self.unreadable += cli_utils.unreadable_steps(Path(workdir, "checkpoints"), self.abstract)
    elif rc != 0:
      self.problems.append(f"{workdir}: exit {rc}\n{text[-3000:]}")
    if "unreadable" in text or "Traceback" in text:
      self.problems.append(f"{workdir}: {text[-3000:]}")
    return rc == 0

  def run(self):
    while self.kills < self.budget:
      workdir = self.root / f"w{len(self.workdirs)}"
      self.workdirs.append(workdir)
      while self.kills < self.budget and not self._one(workdir, kill=True):
        pass
    for workdir in self.workdirs:
      if not Path(workdir, "summary.json").exists():
        for _ in range(3):
          if self._one(workdir, kill=False):
            break


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(corpus_dir, tiny_config_factory, tmp_path):
  env = cli_utils.cli_env(tmp_path, corpus_dir)
  t0 = time.perf_counter()
  ref = cli_utils.run_cli(env, tmp_path / "reference", *CHAOS)  # also fills the compilation cache
  assert ref.returncode == 0, ref.stderr[-3000:]
  t_ref = time.perf_counter() - t0
  want = cli_utils.train_losses(tmp_path / "reference")
  assert [s for s, _ in want] == list(range(1, 21))
  # how long training (after start-up) took, from the run's own log times (WORKDIR/train.log: date time level …)
  log = (tmp_path / "reference" / "train.log").read_text().splitlines()
  stamps = [line.split()[1].replace(",", ".") for line in log if " loop.py:" in line]
  to_s = lambda hms: sum(float(x) * m for x, m in zip(hms.split(":"), (3600, 60, 1)))
  train_seconds = max(0.5, to_s(stamps[-1]) - to_s(stamps[0])) if len(stamps) > 1 else t_ref / 3

  abstract = cli_utils.abstract_state(tiny_config_factory(), env["CPT_JAX_TEST_TOKENIZER"])

  rng = random.Random(SEED)
  lanes = [_Lane(tmp_path / f"lane{i}", env, abstract, random.Random(rng.random()), train_seconds,
                 KILLS // LANES + (i < KILLS % LANES)) for i in range(LANES)]
  threads = [threading.Thread(target=lane.run) for lane in lanes]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - t0

  kills = sum(lane.kills for lane in lanes)
  workdirs = [w for lane in lanes for w in lane.workdirs]
  mismatches = [str(w) for w in workdirs if cli_utils.train_losses(w) != want]
  unreadable = [u for lane in lanes for u in lane.unreadable]
  problems = [p for lane in lanes for p in lane.problems]
  print(f"chaos: {kills} kills, {sum(lane.processes for lane in lanes) + 1} processes, {len(workdirs)} resumed runs, "
        f"{len(mismatches)} mismatches, {len(unreadable)} unreadable checkpoints, {wall:.1f} s "
        f"(reference {t_ref:.1f} s, training part {train_seconds:.1f} s)")
  assert kills == KILLS
  assert not problems, problems[0]
  assert not unreadable, unreadable
  assert all(Path(w, "summary.json").exists() for w in workdirs)
  assert not mismatches, mismatches
