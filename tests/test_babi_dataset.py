"""Rendering, story-level splits, the ArrayRecord dataset and Grain source, and the scorer."""

import json

import pytest

from cpt_jax.data.babi import (ANSWER_DELIMITER, BabiSource, build_babi_splits, majority_baseline,
                               render_example, score, write_babi_dataset)
from cpt_jax.data.babi.score import normalize


def test_render_example_ends_prompt_with_delimiter():
  prompt, completion = render_example(["Mary went to the kitchen.", "John went to the garden."],
                                      "Where is Mary?", "kitchen")
  assert prompt.endswith(ANSWER_DELIMITER)
  assert prompt == ("Passage: Mary went to the kitchen.\nJohn went to the garden.\n"
                    "Question: Where is Mary?\nAnswer:")
  assert completion == " kitchen"


@pytest.fixture(scope="module")
def splits():
  return build_babi_splits("synthetic", 30, seed=0, tasks=range(1, 21), val_fraction=0.2, test_fraction=0.2)


def test_splits_share_no_story_and_cover_all_tasks(splits):
  ids = {name: {r["story_id"] for r in rows} for name, rows in splits.items()}
  assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
  assert not ids["validation"] & ids["test"]
  assert len(ids["train"] | ids["validation"] | ids["test"]) == 30 * 20
  assert sum(len(v) for v in ids.values()) == 30 * 20
  assert {r["task"] for r in splits["test"]} == set(range(1, 21))
  assert len(ids["test"]) == 6 * 20


def test_one_example_per_question_with_the_story_up_to_it(splits):
  story = [r for r in splits["train"] if r["task"] == 1]
  first_id = story[0]["story_id"]
  same = [r for r in story if r["story_id"] == first_id]
  assert len(same) > 1
  assert all(r["prompt"].endswith(ANSWER_DELIMITER) for r in same)
  assert same[1]["prompt"].startswith(same[0]["prompt"].split("Question:")[0])
  assert len(same[1]["prompt"]) > len(same[0]["prompt"])


def test_bad_fractions_and_tasks_are_rejected():
  with pytest.raises(ValueError, match="sum < 1"):
    build_babi_splits("original", 5, 0, tasks=[1], val_fraction=0.6, test_fraction=0.5)
  with pytest.raises(ValueError, match="1 to 20"):
    build_babi_splits("original", 5, 0, tasks=[21])
  with pytest.raises(ValueError, match="unknown bAbI mode"):
    build_babi_splits("fancy", 5, 0, tasks=[1])


def test_array_record_dataset_and_grain_source(tmp_path):
  import grain
  out = write_babi_dataset(tmp_path / "babi", mode="original", num_stories_per_task=10, seed=3, tasks=[1, 19])
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["args"]["mode"] == "original" and info["args"]["tasks"] == [1, 19]
  expected = build_babi_splits("original", 10, 3, tasks=[1, 19])
  for split in ("train", "validation", "test"):
    source = BabiSource(out, split)
    assert len(source) == info["splits"][split]["num_examples"] == len(expected[split])
    assert source[len(source) - 1] == expected[split][-1]
  dataset = grain.MapDataset.source(BabiSource(out, "train")).shuffle(seed=0)
  assert sorted(r["prompt"] for r in dataset) == sorted(r["prompt"] for r in expected["train"])
  with pytest.raises(FileNotFoundError, match="no bAbI split"):
    BabiSource(out, "dev")


def test_normalize_folds_case_punctuation_and_list_order():
  assert normalize(" Kitchen.\nQuestion: x", 1) == "kitchen"
  assert normalize("milk, apple", 8) == normalize("apple,milk", 8)
  assert normalize("south east", 19) == normalize("s,e", 19) != normalize("e,s", 19)


def test_oracle_scores_100_and_constant_scores_majority(splits):
  examples = splits["test"] + splits["validation"]
  answer = {r["prompt"]: r["completion"] for r in examples}
  calls = []

  def oracle(prompts):
    calls.append(len(prompts))
    return [answer[p].upper() + "." for p in prompts]

  result = score(examples, oracle, batch_size=16)
  assert max(calls) == 16 and sum(calls) == len(examples)
  assert result["mean"] == 1.0 and result["num_passed"] == 20
  assert all(result[f"task_{t:02d}"] == 1.0 for t in range(1, 21))

  majority = majority_baseline(examples)
  for task, (top, rate) in majority.items():
    subset = [r for r in examples if r["task"] == task]
    constant = score(subset, lambda prompts, top=top: [top] * len(prompts))
    assert constant[f"task_{task:02d}"] == pytest.approx(rate)
    assert rate < 1.0
    assert constant["passed"][f"task_{task:02d}"] == (rate >= 0.95)
