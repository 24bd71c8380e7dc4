"""The file format round-trips, generation is seeded, and the CLI rejects bad arguments clearly."""

import pytest

from cpt_jax.data.babi import fileformat
from cpt_jax.data.babi.__main__ import main
from cpt_jax.data.babi.generate import generate_stories, statements

OFFICIAL = ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
            "3 Where is Mary? \tbathroom\t1\n1 Sandra went to the garden.\n2 Where is Sandra? \tgarden\t1\n")


def test_parse_of_an_official_snippet_and_back():
  stories = fileformat.parse_stories(OFFICIAL)
  assert [len(s) for s in stories] == [3, 2]
  q = stories[0][2]
  assert (q.text, q.answer, q.supports) == ("Where is Mary? ", "bathroom", (1,))
  assert fileformat.format_stories(stories) == OFFICIAL


@pytest.mark.parametrize("mode", ["original", "synthetic"])
def test_parse_format_roundtrip_all_tasks(mode):
  for task in range(1, 21):
    stories = generate_stories(task, mode, 5, seed=3)
    assert fileformat.parse_stories(fileformat.format_stories(stories)) == stories


def test_parse_rejects_broken_lines():
  with pytest.raises(fileformat.FormatError, match="supporting-fact ids"):
    fileformat.parse_stories("1 Where is Mary?\tkitchen\tx\n")
  with pytest.raises(fileformat.FormatError, match="does not follow"):
    fileformat.parse_stories("1 Mary went home.\n3 Where is Mary?\thome\t1\n")


def test_generation_is_seeded_and_tasks_independent():
  assert generate_stories(2, "synthetic", 4, seed=1) == generate_stories(2, "synthetic", 4, seed=1)
  assert generate_stories(2, "synthetic", 4, seed=1) != generate_stories(2, "synthetic", 4, seed=2)


def test_a_statement_limit_skips_the_longer_stories_of_the_same_stream():
  """The limited stories are the unlimited stream's stories that fit, in order: a limit keeps the stories'
  distribution but for their length. Synthetic task 1 runs past 15 statements in about a third of its stories."""
  stream = generate_stories(1, "synthetic", 120, seed=0)
  fitting = [s for s in stream if statements(s) <= 15]
  assert 20 < len(fitting) < 110 and max(map(statements, stream)) > 15
  assert generate_stories(1, "synthetic", 20, seed=0, max_statements=15) == fitting[:20]
  with pytest.raises(ValueError, match="babi_max_statements"):
    generate_stories(1, "original", 5, seed=0, max_statements=5)  # every original task-1 story has 10


@pytest.mark.parametrize("argv, message", [
    (["generate", "--task", "0", "--out", "x"], "1 to 20"),
    (["generate", "--task", "21", "--out", "x"], "1 to 20"),
    (["generate", "--task", "1", "--mode", "fancy", "--out", "x"], "invalid choice"),
    (["generate", "--task", "1", "--num-stories", "0", "--out", "x"], "positive integer"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
  with pytest.raises(SystemExit):
    main(argv)
  assert message in capsys.readouterr().err


def test_cli_generate_all_and_stats(tmp_path, capsys):
  assert main(["generate", "--task", "all", "--mode", "synthetic", "--num-stories", "20", "--out",
               str(tmp_path)]) == 0
  files = sorted(p.name for p in tmp_path.iterdir())
  assert len(files) == 20 and "qa1_single-supporting-fact_train.txt" in files
  capsys.readouterr()
  assert main(["stats", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  baselines = [float(line.split("baseline ")[1].split("%")[0]) for line in out.splitlines() if "baseline" in line]
  assert len(baselines) == 20 and max(baselines) < 100


def test_cli_single_task_to_file(tmp_path):
  path = tmp_path / "t19.txt"
  assert main(["generate", "--task", "19", "--num-stories", "3", "--out", str(path)]) == 0
  assert len(fileformat.read_file(path)) == 3


def test_synthetic_vocabulary_is_at_least_five_times_the_original():
  from cpt_jax.data.babi.stats import vocabulary
  used = {}
  for mode in ("original", "synthetic"):
    stories = [s for task in range(1, 21) for s in generate_stories(task, mode, 60, seed=0)]
    used[mode] = {kind: len(words) for kind, words in vocabulary(stories).items()}
  assert used["original"] == {"names": 21, "places": 9, "objects": 4}
  for kind in ("names", "places", "objects"):
    assert used["synthetic"][kind] >= 5 * used["original"][kind], (kind, used)


def test_stats_reads_an_official_file(tmp_path, capsys):
  path = tmp_path / "qa1_single-supporting-fact_test.txt"
  path.write_text(OFFICIAL)
  assert main(["stats", str(path)]) == 0
  out = capsys.readouterr().out
  assert "questions 2" in out and "baseline 50.0%" in out
  assert main(["stats", str(tmp_path / "missing")]) == 2


def test_truncated_share_per_task_matches_what_the_pipeline_cuts():
  from cpt_jax.data.babi.stats import truncated_share
  from cpt_jax.data.pipeline import _TokenizeExample

  class Words:  # one token per word; BOS and EOS as the pipeline adds them
    bos_id, eos_id = 1, 2

    def encode(self, text):
      return [3] * len(text.split())

  records = [{"prompt": "a b c", "completion": " d", "task": 1}, {"prompt": "a", "completion": " b", "task": 1},
             {"prompt": "a b c d e f", "completion": " g", "task": 2}]
  out = truncated_share(records, Words().encode, context_length=4)
  assert list(out) == [1, 2, "all"]
  assert out[1] == {"examples": 2, "truncated": 1, "longest": 5, "share": 0.5}  # 3 + 1 words + BOS/EOS shift
  assert out[2]["share"] == 1.0 and out["all"]["truncated"] == 2 and out["all"]["share"] == pytest.approx(2 / 3)
  cut = _TokenizeExample(Words(), 4, True, "t", len(records), report=True)
  for i, r in enumerate(records):
    cut(i, r)
  assert cut._cut == out["all"]["truncated"]
  assert truncated_share(records, Words().encode, 8)["all"]["truncated"] == 0
  assert truncated_share([], Words().encode, 8) == {}
  with pytest.raises(ValueError, match="context_length"):
    truncated_share(records, Words().encode, 0)
