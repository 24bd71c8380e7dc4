"""Every generated answer follows from its story: an independent checker per task re-derives it from the
parsed text (tests/babi_checkers.py), for both modes. The checkers are shown to catch wrong answers."""

import dataclasses

import pytest

from tests import babi_checkers
from cpt_jax.data.babi import fileformat
from cpt_jax.data.babi.generate import generate_stories

TASKS = range(1, 21)


def _parsed(task, mode, n, seed=0):
  """Stories as a user would see them: formatted to text and parsed back."""
  return fileformat.parse_stories(fileformat.format_stories(generate_stories(task, mode, n, seed)))


@pytest.mark.parametrize("mode", ["original", "synthetic"])
@pytest.mark.parametrize("task", TASKS)
def test_checker_agrees_with_every_answer(task, mode):
  stories = _parsed(task, mode, 60)
  assert sum(line.is_question for s in stories for line in s) >= 60
  assert babi_checkers.check_stories(task, stories) == []


def _other_answer(task, answer, answers):
  same = lambda a: task == 8 and sorted(a.split(",")) == sorted(answer.split(","))  # task 8: order-free lists
  others = sorted({a for a in answers if a != answer and not same(a)})
  return others[0] if others else answer + "x"


@pytest.mark.parametrize("task", TASKS)
def test_checker_catches_a_wrong_answer(task):
  stories = _parsed(task, "synthetic", 30, seed=1)
  answers = {line.answer for s in stories for line in s if line.is_question}
  broken = []
  for story in stories:
    lines = list(story)
    i = next(i for i, line in enumerate(lines) if line.is_question)
    lines[i] = dataclasses.replace(lines[i], answer=_other_answer(task, lines[i].answer, answers))
    broken.append(tuple(lines))
  errors = babi_checkers.check_stories(task, broken)
  assert len(errors) >= len(stories) * 0.9, errors[:3]


@pytest.mark.parametrize("task", [1, 6, 12])
def test_supporting_fact_is_the_actors_last_move(task):
  for story in _parsed(task, "original", 30):
    for statements, q in fileformat.questions(story):
      who = next(w for w in q.text.rstrip("? ").split() if w[0].isupper() and w not in ("Where", "Is"))
      last = max(s.id for s in statements if who in s.text.split() and " to the " in s.text)
      assert q.supports == (last,), (q, statements)


def test_supports_point_to_earlier_statements_only():
  story = (fileformat.Line(1, "Mary went to the kitchen."),
           fileformat.Line(2, "Where is Mary?", "kitchen", (2,)))
  assert babi_checkers.check_stories(1, [story])


def test_path_checker_refuses_a_story_with_two_shortest_paths():
  text = ("1 The b is east of the a.\n2 The c is north of the b.\n3 The d is north of the a.\n"
          "4 The c is east of the d.\n5 How do you go from the a to the c?\te,n\t1 2\n")
  errors = babi_checkers.check_stories(19, fileformat.parse_stories(text))
  assert len(errors) == 1 and "2 shortest paths" in errors[0]


def test_position_checker_reads_above_as_directly_above():
  # the paper's example: the red square is level with the blue one, so left of the triangle
  text = ("1 The red square is above the blue square.\n2 The triangle is to the right of the blue square.\n"
          "3 Is the red square to the left of the triangle?\tyes\t1 2\n"
          "4 Is the triangle below the red square?\tyes\t1 2\n"
          "5 Is the red square to the right of the triangle?\tyes\t1 2\n")
  errors = babi_checkers.check_stories(17, fileformat.parse_stories(text))
  assert len(errors) == 1 and "line 5" in errors[0]
