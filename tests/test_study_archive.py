"""Finished cells carried across checkouts: archived beside a report, restored into a fresh study directory."""

import json

import pytest

from cpt_jax import study_archive, study_grid
from tests.test_study import _study_config


def _grid(tmp_path, corpus_dir, root, lr=None):
  s = _study_config(tmp_path, corpus_dir)
  if lr is not None:
    s.adapt.opt.lr = lr
  return study_grid.expand(s, root)


def _finish(cell, loss):
  """What a finished adaptation cell leaves that the runner and the report read."""
  cell.workdir.mkdir(parents=True)
  (cell.workdir / "cell_config.json").write_text(json.dumps(cell.config))
  (cell.workdir / "before.json").write_text(json.dumps({"eval/base/loss": 5.0}))
  (cell.workdir / "summary.json").write_text(json.dumps({"final": {"eval/target/loss": loss},
                                                         "config": {"init_from": cell.config["init_from"]}}))


def test_archived_cells_restore_into_another_directory_only_where_the_grid_is_unchanged(tmp_path, corpus_dir):
  old = tmp_path / "old"
  cells = _grid(tmp_path, corpus_dir, old)
  adapt = [c for c in cells if c.kind == "adapt"]
  _finish(adapt[0], 1.5)
  _finish(adapt[2], 2.5)
  (old / "invocations.jsonl").write_text(json.dumps({"started": 1.0, "seconds": 60.0}) + "\n")
  assert study_archive.save(old, tmp_path / "docs") == 2
  assert str(old) not in (tmp_path / "docs" / "cells.jsonl").read_text()  # portable: the directory is <study>

  new = tmp_path / "new"
  fresh = _grid(tmp_path, corpus_dir, new)
  restored = study_archive.restore(new, fresh, tmp_path / "docs")
  assert restored == [adapt[0].id, adapt[2].id]
  by_id = {c.id: c for c in fresh}
  assert by_id[adapt[0].id].done and by_id[adapt[2].id].done and not by_id[adapt[1].id].done
  assert not by_id["pretrain/xs"].done  # its checkpoints are needed: it reruns
  summary = json.loads((by_id[adapt[2].id].workdir / "summary.json").read_text())
  assert summary["final"]["eval/target/loss"] == 2.5 and summary["config"]["init_from"].startswith(str(new))
  assert json.loads((by_id[adapt[0].id].workdir / "cell_config.json").read_text()) == by_id[adapt[0].id].config

  study_archive.restore(new, fresh, tmp_path / "docs")  # again: nothing written twice
  assert len((new / "invocations.jsonl").read_text().splitlines()) == 1

  changed = _grid(tmp_path, corpus_dir, tmp_path / "changed", lr=0.123)  # the design changed: its cells rerun
  assert study_archive.restore(tmp_path / "changed", changed, tmp_path / "docs") == []
  with pytest.raises(ValueError, match="no .*cells.jsonl"):
    study_archive.restore(new, fresh, tmp_path / "nothing")
