"""Records that stay true: a resumed run may not change what was trained (refused, nothing written), may change
logging and evaluation cadence (recorded in config_changes.jsonl), and a finished run is never rewritten."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from cpt_jax import loop, run_record
from cpt_jax.config import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


def _tree(root: Path) -> dict[str, tuple[int, int]]:
  """Size and mtime of every file, the lease's lock file aside (a run opens it, without changing it)."""
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
          if p.is_file() and p.name != ".lease.lock"}


def test_resume_refuses_a_changed_lr_and_records_a_changed_eval_cadence(tiny_config_factory, pretrained, tmp_path):
  workdir = tmp_path / "w"
  with pytest.raises(loop.Preempted):
    loop.run(tiny_config_factory(**{"train.stop_at_step": 8}), str(workdir))
  before = _tree(workdir)
  with pytest.raises(ConfigError) as e:
    loop.run(tiny_config_factory(**{"opt.lr": 1e-3, "model.dropout": 0.1}), str(workdir))
  msg = str(e.value)
  assert "2 differences" in msg and "model.dropout: 0.0 → 0.1" in msg and "opt.lr: 0.01 → 0.001" in msg, msg
  assert "nothing was changed" in msg and "new --workdir" in msg and "\n" not in msg
  assert _tree(workdir) == before  # refused before anything was written

  summary = loop.run(tiny_config_factory(**{"train.eval_every_tokens": 8 * 32 * 6}), str(workdir))
  changes = [json.loads(line) for line in (workdir / run_record.CHANGES_FILE).read_text().splitlines()]
  assert [(c["step"], c["changes"]) for c in changes] == [
      (8, {"train.eval_every_tokens": [8 * 32 * 4, 8 * 32 * 6], "train.stop_at_step": [8, 0]})]
  assert json.loads((workdir / "config.json").read_text())["train"]["eval_every_tokens"] == 8 * 32 * 6
  evals = [r["step"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
           if "eval/base/loss" in r]
  assert evals == [0, 4, 8, 12, 18, 20]  # the new cadence from step 8 on
  assert cli_utils.train_losses(workdir) == cli_utils.train_losses(pretrained[0])
  assert summary["steps"] == 20

  finished = _tree(workdir)  # a finished run: reported, nothing rewritten, whatever harmless field changes
  again = loop.run(tiny_config_factory(**{"train.log_every_steps": 3}), str(workdir))
  assert again == json.loads((workdir / "summary.json").read_text())
  assert _tree(workdir) == finished
  with pytest.raises(ConfigError, match="opt.lr: 0.01 → 0.001"):
    loop.run(tiny_config_factory(**{"opt.lr": 1e-3}), str(workdir))
  assert _tree(workdir) == finished


def test_a_bigger_budget_needs_allow_budget_change(tiny_config_factory, pretrained, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(pretrained[0], workdir)
  finished = _tree(workdir)
  more = {"train.total_tokens": 8 * 32 * 22}
  with pytest.raises(ConfigError, match=r"train.total_tokens: 5120 → 5632.*allow_budget_change=True"):
    loop.run(tiny_config_factory(**more), str(workdir))
  assert _tree(workdir) == finished
  summary = loop.run(tiny_config_factory(**more, **{"train.allow_budget_change": True}), str(workdir))
  assert summary["steps"] == 22
  change = json.loads((workdir / run_record.CHANGES_FILE).read_text())
  assert change["step"] == 20 and change["changes"]["train.total_tokens"] == [5120, 5632]
