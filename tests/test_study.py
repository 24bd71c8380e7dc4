"""Study runner: grid expansion, cells through the train entry point, skip/resume, results.csv."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ml_collections
import pytest

from cpt_jax import study_grid


def _study_file(tmp_path, corpus_dir, ptpp=(0.5, 1.0)) -> Path:
  path = tmp_path / "study_tiny.py"
  path.write_text(textwrap.dedent(f'''
      import ml_collections
      from cpt_jax.config import default_config

      def get_config():
        c = default_config()
        c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.max_len = 1, 32, 2, 32
        c.data.base.kind, c.data.base.path = "files", "{corpus_dir}/{{split}}_*.txt"
        c.data.data_dir, c.data.vocab_size, c.data.batch_size = "{tmp_path}/data", 400, 8
        c.opt.warmup_tokens, c.train.eval_rows, c.train.progress = 0, 8, False
        c.train.eval_every_tokens = c.train.checkpoint_every_tokens = 8 * 32 * 4
        a = ml_collections.ConfigDict(c.to_dict())
        a.data.target.kind, a.data.target.babi_stories, a.data.target.babi_tasks = "babi", 20, "1"
        a.train.total_tokens = 8 * 32 * 3
        s = ml_collections.ConfigDict()
        s.pretrain, s.adapt, s.sizes = c, a, {{"xs": {{}}}}
        s.ptpp = {list(ptpp)}
        s.replay_tokens = 0
        s.axes = [("r", [("r0", {{}}), ("r50", {{"replay.ratio": 0.5, "replay.kind": "real"}})])]
        s.report = ""
        return s
      '''))
  return path


def _study_config(tmp_path, corpus_dir):
  """The tiny study's config, loaded as the runner loads a config file."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("study_tiny", _study_file(tmp_path, corpus_dir))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def test_expand_builds_the_grid_in_dependency_order(tmp_path, corpus_dir):
  cells = study_grid.expand(_study_config(tmp_path, corpus_dir), tmp_path / "s")
  assert [c.id for c in cells] == ["pretrain/xs", "cells/xs_ptpp0.5_r0", "cells/xs_ptpp0.5_r50",
                                   "cells/xs_ptpp1_r0", "cells/xs_ptpp1_r50"]
  pre = cells[0].config
  assert pre["train"]["save_at_ptpp"] == "0.5,1" and pre["train"]["ptpp"] == 1.0
  steps = [c.config["init_step"] for c in cells[1:]]
  assert steps[0] == steps[1] < steps[2] == steps[3]  # each PTPP stage starts from its own checkpoint
  assert cells[2].config["replay"]["ratio"] == 0.5 and cells[1].config["replay"]["ratio"] == 0.0



def test_expand_runs_each_seed_and_pretrains_each_stage_on_its_own(tmp_path, corpus_dir):
  """seeds: one adaptation cell per seed (its `seed` set, excludable by label); pretrain_per_stage: one
  pretraining run per stage, whose schedule ends at that stage, each stage's cells starting from its end."""
  s = _study_config(tmp_path, corpus_dir)
  s.seeds, s.pretrain_per_stage = [0, 1, 2], True
  s.exclude = [{"ptpp": "0.5", "seed": "s1"}]
  cells = study_grid.expand(s, tmp_path / "s")
  pre = [c for c in cells if c.kind == "pretrain"]
  assert [c.id for c in pre] == ["pretrain/xs_ptpp0.5", "pretrain/xs_ptpp1"]
  assert [(c.config["train"]["ptpp"], c.config["train"]["save_at_ptpp"]) for c in pre] == [(0.5, "0.5"), (1.0, "1")]
  adapt = [c for c in cells if c.kind == "adapt"]
  assert len(adapt) == 2 * 2 * 3 - 2  # stages × replay × seeds, less the excluded (0.5, s1) pair
  assert "cells/xs_ptpp0.5_r0_s1" not in {c.id for c in adapt} and "cells/xs_ptpp1_r50_s2" in {c.id for c in adapt}
  for c in adapt:
    assert c.config["seed"] == int(c.labels["seed"][1:])
    assert c.needs == [f"pretrain/xs_ptpp{c.labels['ptpp']}"]
    assert c.config["init_from"] == str(tmp_path / "s" / "pretrain" / f"xs_ptpp{c.labels['ptpp']}")
  first = {c.labels["ptpp"]: c.config["init_step"] for c in adapt}
  assert first["0.5"] < first["1"]
  s.first = [{"ptpp": "1", "r": "r50"}, {"seed": "s2"}]  # in this order, then the rest
  ordered = study_grid.expand(s, tmp_path / "s")
  assert [c.id for c in ordered] == [  # each pretraining just ahead of the first cell that needs it
      "pretrain/xs_ptpp1", "cells/xs_ptpp1_r50_s0", "cells/xs_ptpp1_r50_s1", "cells/xs_ptpp1_r50_s2",
      "pretrain/xs_ptpp0.5", "cells/xs_ptpp0.5_r0_s2", "cells/xs_ptpp0.5_r50_s2", "cells/xs_ptpp1_r0_s2",
      "cells/xs_ptpp0.5_r0_s0", "cells/xs_ptpp0.5_r50_s0", "cells/xs_ptpp1_r0_s0", "cells/xs_ptpp1_r0_s1"]
  assert sorted(c.id for c in ordered) == sorted(c.id for c in cells)

@pytest.mark.slow
def test_killed_study_resumes_without_redoing_cells(tmp_path, corpus_dir):
  cfg_file = _study_file(tmp_path, corpus_dir, ptpp=[0.5])  # one stage: pretraining and two adapt cells
  root = tmp_path / "s"
  cmd = [sys.executable, "-m", "cpt_jax.study", "--config", str(cfg_file), "--workdir", str(root)]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
  first = root / "cells" / "xs_ptpp0.5_r0" / "summary.json"
  deadline = time.time() + 300
  def recorded():  # the runner records its timing after each finished cell, the first adapt cell included
    path = root / "invocations.jsonl"
    return path.exists() and "cells/xs_ptpp0.5_r0" in path.read_text()
  while not recorded() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.5)
  assert first.exists(), "the first adapt cell never finished"
  time.sleep(3)  # the next cell has started
  os.kill(proc.pid, signal.SIGTERM)  # the runner alone: it passes the signal to the cell it is running
  assert proc.wait(timeout=120) == 75
  # cost.json was first written before any tokenizer existed; the stopped runner rewrote it with measured sizes
  corpora = json.loads((root / "cost.json").read_text())["corpora"]
  assert corpora and all("estimated" not in c["how"] for c in corpora.values()), corpora
  orphans = subprocess.run(["pgrep", "-f", f"--workdir {root}/"], capture_output=True, text=True, check=False)
  assert orphans.stdout == "", orphans.stdout  # no cell left training on its own
  with open(root / "results.csv", newline="") as f:  # written after each finished cell, not only at the end
    assert [row["cell"] for row in csv.DictReader(f)] == ["xs_ptpp0.5_r0"]
  stopped = json.loads((root / "invocations.jsonl").read_text())  # the stopped invocation's timing, so far
  assert "cells/xs_ptpp0.5_r0" in stopped["cells_run"] and stopped["seconds"] > 0
  mtime = first.stat().st_mtime_ns
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert first.stat().st_mtime_ns == mtime  # finished cell not redone
  with open(root / "results.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2
  for row in rows:
    assert float(row["target_loss"]) > 0 and row["base_loss_before"] != ""
    assert row["copy_gain_before"] != "" and row["copy_gain"] != ""  # the copying probe, before and after
    assert row["copy_text_gain_before"] != "" and row["copy_text_gain"] != ""  # and on base-corpus text
    assert float(row["forgetting"]) == pytest.approx(float(row["base_loss"]) - float(row["base_loss_before"]), abs=1e-6)
  assert {row["replay_ratio"] for row in rows} == {"0.0", "0.5"}
  status = subprocess.run(cmd + ["--status"], env=env, capture_output=True, text=True, timeout=120, check=False)
  assert "3 done" in status.stdout


def test_expand_reuses_an_existing_pretraining_run(tmp_path, corpus_dir):
  import json
  s = _study_config(tmp_path, corpus_dir)
  run = tmp_path / "old_pretrain"
  run.mkdir()
  cfg = s.pretrain.to_dict()
  cfg["train"]["save_at_ptpp"] = "0.25,0.5,1"
  (run / "config.json").write_text(json.dumps(cfg))
  s.pretrained = {"xs": str(run)}
  cells = study_grid.expand(s, tmp_path / "s")
  assert cells[0].reused and cells[0].workdir == run and not cells[0].done
  assert {c.config["init_from"] for c in cells[1:]} == {str(run)}
  with pytest.raises(ValueError, match="has not reached the study's stages"):
    study_grid.check_reused(cells)  # pylint: disable=protected-access
  for c in cells[1:]:  # a run still going (or stopped) that has passed every stage is usable
    (run / "checkpoints" / str(c.config["init_step"])).mkdir(parents=True, exist_ok=True)
  assert cells[0].done
  study_grid.check_reused(cells)  # pylint: disable=protected-access
  (run / "summary.json").write_text("{}")
  (run / "checkpoints" / str(cells[-1].config["init_step"])).rmdir()
  with pytest.raises(ValueError, match="no checkpoint at step"):
    study_grid.check_reused(cells)  # pylint: disable=protected-access
  s.ptpp = [0.5, 2.0]
  with pytest.raises(ValueError, match=r"lacks the study's PTPP stages \['2'\]"):
    study_grid.expand(s, tmp_path / "s")
  s.ptpp = [0.5]
  s.pretrain.model.d_model = 64
  with pytest.raises(ValueError, match="model"):
    study_grid.expand(s, tmp_path / "s")


def test_midtrain_continues_each_stage_on_the_base_corpus_and_the_cells_start_from_it(tmp_path, corpus_dir):
  """study.midtrain: one continued-pretraining run per stage, from the stage's checkpoint, on data.base with the
  overrides (copy rows here); that stage's cells start from the phase's last step."""
  s = _study_config(tmp_path, corpus_dir)
  s.midtrain = ("copy", {"data.copy_share": 0.5, "opt.lr": 1e-3, "train.total_tokens": 8 * 32 * 5})
  cells = study_grid.expand(s, tmp_path / "s")
  assert [c.id for c in cells] == ["pretrain/xs", "midtrain/xs_ptpp0.5", "cells/xs_ptpp0.5_r0",
                                   "cells/xs_ptpp0.5_r50", "midtrain/xs_ptpp1", "cells/xs_ptpp1_r0",
                                   "cells/xs_ptpp1_r50"]
  pre, mid = cells[0], cells[1]
  assert mid.needs == [pre.id] and mid.kind == "midtrain"
  m = mid.config
  assert (m["stage"], m["init_from"], m["data"]["copy_share"], m["opt"]["lr"]) == (
      "adapt", str(pre.workdir), 0.5, 1e-3)
  assert m["init_step"] == study_grid._stage_step(ml_collections.ConfigDict(pre.config), 0.5)
  assert m["data"]["target"] == pre.config["data"]["base"] and m["train"]["ptpp"] == 0
  for c in cells[2:4]:
    assert c.needs == [mid.id] and c.config["init_from"] == str(mid.workdir) and c.config["init_step"] == 5
  assert cells[5].config["init_from"] == str(cells[4].workdir)
  s.midtrain = ("copy", {"data.copy_share": 0.5, "train.total_tokens": 0})
  with pytest.raises(ValueError, match="study.midtrain"):
    study_grid.expand(s, tmp_path / "s")
