"""A study's cost before it runs (cpt_jax/study_cost.py): tokens and FLOPs by hand, the KL teacher's forward,
corpus epochs and the refusal of a study that repeats a corpus, `--status` of the shipped full studies."""

import importlib.util
import json
import math
import os
import socket
import time
from pathlib import Path

import ml_collections
import pytest

from cpt_jax import lease, study, study_cost, study_grid
from cpt_jax.config import default_config

REPO = Path(__file__).parent.parent
L, D, T, V, B = 2, 64, 32, 300, 8  # the tiny model of these tests: layers, width, context, vocabulary, batch rows


def _study(tmp_path, target_size=1e9, adapt_tokens=10_000, ratio=0.25):
  c = default_config()
  c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.max_len = L, D, 2, T
  c.data.vocab_size, c.data.batch_size, c.data.data_dir = V, B, str(tmp_path / "data")
  c.data.base.kind, c.data.base.name, c.data.base.size_tokens = "hf", "org/base", 1e9
  a = ml_collections.ConfigDict(c.to_dict())
  a.data.target.kind, a.data.target.name, a.data.target.size_tokens = "hf", "org/target", target_size
  a.train.total_tokens = adapt_tokens
  s = ml_collections.ConfigDict()
  s.pretrain, s.adapt, s.sizes, s.ptpp, s.replay_tokens = c, a, {"xs": {}}, [2.0], 0
  s.axes = [("method", [
      ("none", {}),
      ("ntp", {"replay.ratio": ratio, "replay.kind": "real", "replay.loss": "ntp", "replay.semantics": "regularizer"}),
      ("kl", {"replay.ratio": ratio, "replay.kind": "real", "replay.loss": "kl", "replay.semantics": "regularizer"}),
  ])]
  return s


def _by_hand_params():
  """Non-embedding and all parameters of the tiny GPT-2, written out (biases, 4 norms per block, final norm)."""
  f = 4 * D
  block = (3 * D * D + 3 * D) + (D * D + D) + (D * f + f + f * D + D) + 4 * D
  non_embedding = L * block + 2 * D
  return non_embedding, non_embedding + V * D + T * D  # tied head, learned positions


def test_tokens_and_flops_of_a_cell_match_the_hand_computation(tmp_path):
  s = _study(tmp_path)
  cost = study_cost.estimate(study_grid.expand(s, tmp_path / "s"))
  by_id = {c.cell.id: c for c in cost.cells}
  non_embedding, params = _by_hand_params()
  per_token = 6 * (non_embedding + V * D) + 12 * L * T * D  # forward + backward, attention uncounted causal half

  pre = by_id["pretrain/xs"]
  steps = math.ceil(2.0 * params / (B * T))  # PTPP 2, whole steps of B rows of T tokens
  assert (pre.steps, pre.tokens) == (steps, steps * B * T)
  assert pre.flops == pytest.approx(steps * B * T * per_token, rel=1e-12)

  none = by_id["cells/xs_ptpp2_none"]
  steps = math.ceil(10_000 / (B * T))
  assert (none.steps, none.tokens) == (steps, steps * B * T) == (40, 10_240)
  assert none.flops == pytest.approx(steps * B * T * per_token, rel=1e-12)
  # what each run reads: the target's rows, and (real replay) 2 of 8 rows from data.base
  ntp = by_id["cells/xs_ptpp2_ntp"]
  assert sorted(ntp.draws.values()) == [40 * 2 * T, 40 * 6 * T]
  assert ntp.flops == pytest.approx(none.flops, rel=1e-12)  # NTP replay: the same rows, no teacher


def test_the_kl_teachers_forward_is_counted(tmp_path):
  cost = study_cost.estimate(study_grid.expand(_study(tmp_path), tmp_path / "s"))
  by_id = {c.cell.id: c for c in cost.cells}
  non_embedding, _ = _by_hand_params()
  per_token = 6 * (non_embedding + V * D) + 12 * L * T * D
  kl, ntp = by_id["cells/xs_ptpp2_kl"], by_id["cells/xs_ptpp2_ntp"]
  replay_rows = 2  # 25 % of 8 rows
  assert kl.flops - ntp.flops == pytest.approx(kl.steps * replay_rows * T * per_token / 3, rel=1e-9)
  assert study_cost.teacher_in_step(ml_collections.ConfigDict(kl.cell.config))
  assert not study_cost.teacher_in_step(ml_collections.ConfigDict(ntp.cell.config))


def test_status_shows_cells_another_runner_is_training_and_their_saved_step(tmp_path):
  s = _study(tmp_path)
  cells = {c.id: c for c in study_grid.expand(s, tmp_path / "s")}
  live, stopped = cells["cells/xs_ptpp2_kl"].workdir, cells["cells/xs_ptpp2_ntp"].workdir
  for workdir, step in ((live, 4), (stopped, 2)):
    (workdir / "checkpoints" / str(step)).mkdir(parents=True)
    (workdir / "checkpoints" / str(step) / "commit_success.txt").write_text("")  # a committed save
  (stopped / "checkpoints" / "9").mkdir()  # a save that never committed: not counted
  (live / lease.LEASE_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                   "renewed": time.time()}))
  steps = {c.cell.id: c.steps for c in study_cost.estimate(list(cells.values())).cells}
  text = study.status(s, tmp_path / "s")
  assert f"running  cells/xs_ptpp2_kl  (step 4 of {steps['cells/xs_ptpp2_kl']:,} saved)" in text
  assert f"pending  cells/xs_ptpp2_ntp  (step 2 of {steps['cells/xs_ptpp2_ntp']:,} saved)" in text
  assert ", 1 running, " in text.splitlines()[0]


def test_a_corpus_read_five_times_is_flagged_and_the_study_refused(tmp_path):
  # the no-replay cell reads 10,240 target tokens of a 2,048-token corpus: 5 epochs
  s = _study(tmp_path, target_size=2048)
  cost = study_cost.estimate(study_grid.expand(s, tmp_path / "s"))
  assert study_cost.repeats(cost) == [("cells/xs_ptpp2_none", "target", pytest.approx(5.0))]
  with pytest.raises(study_cost.CorpusRepeated) as e:
    study_cost.check_repeats(cost)
  assert "cells/xs_ptpp2_none would read the corpus target 5.0 times" in str(e.value)
  text = study.status(s, tmp_path / "s", "h100", 0.4)
  assert "target 5 > 4: REFUSED" in text and "REPEATS: 1 run reads a corpus more than 4 times" in text
  with pytest.raises(study_cost.CorpusRepeated, match="cells/xs_ptpp2_none would read the corpus target"):
    study.run_study(s, tmp_path / "s")
  assert not (tmp_path / "s").exists()  # refused before anything was written
  study_cost.check_repeats(study_cost.estimate(study_grid.expand(_study(tmp_path, target_size=2560), tmp_path / "s")))


def test_babi_original_is_repeated_by_design_and_local_corpora_are_estimated_without_a_tokenizer(tmp_path):
  s = _study(tmp_path)
  s.adapt.data.target.kind, s.adapt.data.target.size_tokens = "babi", 0.0
  s.adapt.data.target.babi_mode, s.adapt.data.target.babi_stories, s.adapt.data.target.babi_tasks = "original", 10, "1"
  s.pretrain.data.base.kind, s.pretrain.data.base.name, s.pretrain.data.base.size_tokens = "corpus", "english", 0.0
  s.adapt.train.total_tokens = 200_000
  cost = study_cost.estimate(study_grid.expand(s, tmp_path / "s"))
  babi = next(c for c in cost.corpora.values() if c.label.startswith("babi_original"))
  assert babi.by_design and babi.estimated and 0 < babi.tokens < 200_000 / 5
  assert not study_cost.repeats(cost)  # read many times, on purpose: never refused
  english = next(c for c in cost.corpora.values() if c.label == "english")  # no corpus or tokenizer here
  assert english.estimated and english.tokens == pytest.approx(21_577_686 * 0.51)


def test_cpu_hours_are_the_measured_wall_time_of_finished_cells(tmp_path):
  s = _study(tmp_path)
  cells = study_grid.expand(s, tmp_path / "s")
  pre = cells[0]
  pre.workdir.mkdir(parents=True)
  (pre.workdir / "summary.json").write_text(json.dumps({"wall_seconds": 7200.0}))
  cost = study_cost.estimate(cells)
  hours, how = study_cost.device_hours(cost, "cpu")
  assert hours[0] == 2.0 and "measured wall time of the 1 finished cells" in how
  rate = cost.cells[0].flops / 7200.0
  assert hours[1] == pytest.approx(cost.cells[1].flops / rate / 3600)
  # the same through cost.json, as a report reads it: the done files point at the cells' summaries
  from cpt_jax.research.report import common  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  (tmp_path / "s" / "cost.json").write_text(json.dumps(study_cost.to_json(cost, tmp_path / "s")))
  assert json.loads((tmp_path / "s" / "cost.json").read_text())["cells"][0]["done_file"] == \
      f"{pre.id}/summary.json"
  line = common._hours_left(tmp_path / "s", {}, 7200.0)[0]  # pylint: disable=protected-access
  assert line.startswith(f"Still to run: {len(cells) - 1} of {len(cells)} training runs"), line
  assert f", {sum(hours[1:]):.1f} h at the GFLOP/s" in line, line
  gpu, how = study_cost.device_hours(cost, "TPU v5e", 0.5)
  assert gpu[0] == pytest.approx(cost.cells[0].flops / (197e12 * 0.5) / 3600) and "TPU v5e" in how
  with pytest.raises(ValueError, match="--accelerator"):
    study_cost.accelerator("v100")


@pytest.mark.parametrize("name", ["study_babi", "study_forgetting", "study_ptpp"])
def test_status_of_each_full_study_prints_device_hours_and_no_repeats(name, tmp_path):
  spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  text = study.status(mod.get_config("full"), tmp_path / name)
  head, cost = text.split("\ncost: ", 1)
  assert head.startswith("study: ") and cost.startswith("H100 SXM (989 TFLOP/s bf16 peak) at MFU 0.4")
  total = next(line for line in cost.splitlines() if line.strip().startswith("total"))
  assert float(total.split()[3]) > 1  # H100-hours of the whole study
  assert "repeats: no run reads a corpus more than 4 times" in cost
  assert "fineweb-edu:sample-100BT: 100G — stated in the config" in cost
