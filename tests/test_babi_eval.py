"""bAbI scoring: held-out test stories that no training data holds, crossed between variants, the same in every
run; training stories independent of the run's seed; the metric names and results.csv columns."""

import csv
import json

import pytest

from cpt_jax import build, config as config_lib, evaluation, metrics, study_grid, study_results
from cpt_jax.data import sources
from cpt_jax.data.babi.dataset import BabiSource


def _target(mode="original", stories=1000, tasks="4"):
  c = config_lib.default_config().data.target
  c.kind, c.babi_mode, c.babi_stories, c.babi_tasks = "babi", mode, stories, tasks
  return c


def _story_texts(records) -> set[str]:
  """Each story's full text: the prompt of its last question (the passage holds every statement before it)."""
  by_story: dict[str, str] = {}
  for r in records:
    by_story[r["story_id"]] = max(by_story.get(r["story_id"], ""), r["prompt"], key=len)
  return set(by_story.values())


def test_heldout_stories_never_occur_in_the_training_split(tmp_path):
  # task 4 of the original vocabulary has two-statement stories: independent draws collide
  target = _target()
  train = BabiSource(sources.dataset_path(target, tmp_path), "train")
  train_texts = _story_texts(train[i] for i in range(len(train)))
  unfiltered = _story_texts(sources.babi_heldout(target, "original", tmp_path, 60, 1000, exclude_stories=0))
  assert unfiltered & train_texts, "the test needs colliding stories to be meaningful"
  heldout = sources.babi_heldout(target, "original", tmp_path, 60, 1000, exclude_stories=1000)
  assert not _story_texts(heldout) & train_texts
  assert len(_story_texts(heldout)) < len(unfiltered)
  # the same seed as the training stream: every story of the pool is dropped, the rest kept
  same = sources.babi_heldout(target, "original", tmp_path, 30, 0, exclude_stories=20)
  assert {r["story_id"].rsplit("-", 1)[1] for r in same} == {str(i) for i in range(20, 30)}


def _cfg(tmp_path, mode, seed, **train):
  c = config_lib.default_config()
  c.seed, c.data.data_dir = seed, str(tmp_path)
  c.data.target.update(kind="babi", babi_mode=mode, babi_stories={"synthetic": 40, "original": 10}[mode],
                       babi_tasks="1,6")
  c.train.update({"babi_eval_examples": 40, **train})
  return c


def test_crossed_eval_sets_are_the_same_in_every_run_and_training_data_ignores_the_seed(tmp_path):
  crossed = {"babi_eval_stories": 6, "babi_eval_modes": "synthetic,original", "babi_eval_exclude_stories": 40}
  sets = {(m, s): build.babi_eval_sets(_cfg(tmp_path, m, s, **crossed), tmp_path)
          for m in ("synthetic", "original") for s in (0, 1)}
  for name in ("babi_synthetic", "babi_original"):
    first = sets[("synthetic", 0)][name]
    assert first and {ex["task"] for ex in first} == {1, 6}
    assert all(v[name] == first for v in sets.values())
  assert sets[("synthetic", 1)]["babi"] is sets[("synthetic", 1)]["babi_synthetic"]  # one set, scored once
  assert sets[("original", 0)]["babi"] == sets[("synthetic", 0)]["babi_original"]
  # the run's seed orders the stories; which stories is babi_data_seed's
  paths = {s: sources.dataset_path(_cfg(tmp_path, "synthetic", s).data.target, tmp_path) for s in (0, 1, 2)}
  assert len(set(paths.values())) == 1
  other = _cfg(tmp_path, "synthetic", 0)
  other.data.target.babi_data_seed = 1
  assert sources.dataset_path(other.data.target, tmp_path) != paths[0]
  # the default: the own validation split, as before
  default = build.babi_eval_sets(_cfg(tmp_path, "synthetic", 0), tmp_path)
  assert list(default) == ["babi"] and default["babi"][0]["story_id"].startswith("synthetic-s0-")


@pytest.mark.parametrize("train, target, match", [
    ({"babi_eval_modes": "synthetic,spanish"}, {}, r"train\.babi_eval_modes='synthetic,spanish': must be empty"),
    ({"babi_eval_modes": "original"}, {}, r"train\.babi_eval_stories=0: crossed scoring"),
    ({"babi_eval_modes": "original", "babi_eval_stories": 5}, {}, r"train\.babi_eval_exclude_stories=0: crossed"),
    ({"babi_eval_stories": 5, "babi_eval_exclude_stories": 3}, {}, r"babi_eval_exclude_stories=3: is below"),
    ({"babi_eval_stories": 5, "babi_eval_examples": 0}, {}, r"train\.babi_eval_examples=0: bAbI scoring is off"),
    ({}, {"babi_eval_seed": 0}, r"data\.target\.babi_eval_seed=0: must differ from data\.target\.babi_data_seed"),
])
def test_bad_babi_eval_fields_are_named(tmp_path, train, target, match):
  c = _cfg(tmp_path, "synthetic", 0, **train)
  c.data.target.update(**target)
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c, 1)
  ok = _cfg(tmp_path, "synthetic", 0, babi_eval_modes="synthetic,original", babi_eval_stories=5,
            babi_eval_exclude_stories=40)
  config_lib.validate(ok, 1)


def test_metric_names_with_per_task_majority():
  examples = [{"task": 1, "completion": " kitchen"}, {"task": 1, "completion": " kitchen"},
              {"task": 1, "completion": " garden"}, {"task": 6, "completion": " yes"}]
  result = {"task_01": 2 / 3, "task_06": 0.0, "mean": 1 / 3, "num_passed": 0, "majority_baseline": (2 / 3 + 1) / 2}
  m = evaluation.babi_result_metrics(result, examples, "babi_original")
  assert m["eval/babi_original/task_01/majority"] == pytest.approx(2 / 3)
  assert m["eval/babi_original/task_06/majority"] == 1.0
  assert m["eval/babi_original/task_01/accuracy"] == pytest.approx(2 / 3)
  assert m["eval/babi_original/accuracy"] == pytest.approx(1 / 3) and m["eval/babi_original/examples"] == 4
  assert "eval/babi/task_01/majority" in evaluation.babi_result_metrics(result, examples)


def test_results_columns_per_task_and_crossed(tmp_path):
  final = {"eval/babi/accuracy": 0.5, "eval/babi/majority_baseline": 0.4, "eval/babi/examples": 8}
  for prefix, acc in (("babi", 0.5), ("babi_synthetic", 0.5), ("babi_original", 0.3)):
    final[f"eval/{prefix}/accuracy"] = acc
    for task in (1, 6, 11):
      final[f"eval/{prefix}/task_{task:02d}/accuracy"] = acc
      final[f"eval/{prefix}/task_{task:02d}/majority"] = 0.4
  (tmp_path / "summary.json").write_text(json.dumps({
      "final": final, "before": {}, "params": 1000, "atpp": 1.0, "tokens": 100, "replay_ratio": 0.0,
      "replay_kind": "none", "replay_loss": "ntp", "replay_coeff": 1.0, "wall_seconds": 1.0}))
  cell = study_grid.Cell("cells/c", "adapt", tmp_path, None, {"size": "s", "ptpp": "4", "data": "synthetic"}, [])
  rows = study_results.collect_results([cell], tmp_path / "results.csv")
  row = rows[0]
  assert row["babi_accuracy_qa6"] == 0.5 and row["babi_majority_qa11"] == 0.4
  assert row["babi_original_accuracy"] == 0.3 and row["babi_original_accuracy_qa1"] == 0.3
  assert row["babi_synthetic_majority_qa6"] == 0.4 and "babi_babi_accuracy" not in row
  with open(tmp_path / "results.csv", newline="") as f:
    header = next(csv.reader(f))
  i = header.index("babi_accuracy_qa6")
  assert header[i + 1] == "babi_majority_qa6" and header[i + 2] == "babi_accuracy_qa11"
  assert header.index("babi_original_accuracy") < header.index("babi_original_accuracy_qa1")


def test_adapt_run_scores_both_variants(tiny_config_factory, pretrained, tmp_path):
  from cpt_jax import loop  # pylint: disable=g-import-not-at-top
  cfg = tiny_config_factory(**{
      "stage": "adapt", "init_from": str(pretrained[0]), "data.target.kind": "babi", "data.target.babi_stories": 8,
      "data.target.babi_tasks": "1,6", "train.total_tokens": 8 * 32 * 2, "train.babi_eval_examples": 8,
      "train.babi_eval_stories": 3, "train.babi_eval_modes": "synthetic,original",
      "train.babi_eval_exclude_stories": 8})
  loop.run(cfg, str(tmp_path))
  last = [r for r in metrics.read_metrics(str(tmp_path)) if "eval/babi/accuracy" in r][-1]
  for prefix in ("babi", "babi_synthetic", "babi_original"):
    for key in ("accuracy", "majority_baseline", "task_01/accuracy", "task_06/majority"):
      assert f"eval/{prefix}/{key}" in last, (prefix, key)
  assert last["eval/babi/accuracy"] == last["eval/babi_synthetic/accuracy"]
