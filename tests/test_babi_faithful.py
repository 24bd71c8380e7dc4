"""The generated tasks are as hard as the original bAbI (Weston et al. 2015; the facebook/bAbI-tasks
generator and its released v1.2 files): no answer follows from a shortcut the original does not allow, and
the story shapes of `original` mode are the original's. Each test failed on the generator before the audit
that added it (sizes on one global ladder, answers in the last line, a forced second member of a species,
two agents in task 20, ...)."""

import collections
import re

import pytest

from cpt_jax.data.babi import fileformat
from cpt_jax.data.babi.generate import generate_stories

MODES = ("original", "synthetic")
DIRECTIONS = ("north", "south", "east", "west")


def _stories(task, mode, n, seed=0):
  """Stories as a reader sees them: formatted to text and parsed back."""
  return fileformat.parse_stories(fileformat.format_stories(generate_stories(task, mode, n, seed)))


def _questions(task, mode, n, seed=0):
  """(statements before it, question) for every question of `n` stories."""
  return [pair for story in _stories(task, mode, n, seed) for pair in fileformat.questions(story)]


def _without_names(text):
  """The question with every capitalised word after the first replaced: who is asked about is not a key."""
  first, *rest = text.split()
  return " ".join([first] + ["X" if w[0].isupper() else w for w in rest])


def _lookup_accuracy(train, test, key):
  """Accuracy on `test` of the most frequent answer per key in `train` (the overall one for unseen keys)."""
  table = collections.defaultdict(collections.Counter)
  for statements, q in train:
    table[key(statements, q)][q.answer] += 1
  fallback = collections.Counter(q.answer for _, q in train).most_common(1)[0][0]
  right = 0
  for statements, q in test:
    seen = table.get(key(statements, q))
    right += (seen.most_common(1)[0][0] if seen else fallback) == q.answer
  return right / len(test)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task", range(1, 21))
def test_the_question_alone_does_not_give_the_answer(task, mode):
  # The original allows a question-only lookup nowhere near 90 %. Its highest is task 20 (~75 %): "why did
  # X get the apple?" is always "hungry", but "where will X go?" needs X's feeling.
  train, test = _questions(task, mode, 250, seed=0), _questions(task, mode, 250, seed=1)
  assert _lookup_accuracy(train, test, lambda _, q: _without_names(q.text)) < 0.9


_SIZE_Q = re.compile(r"^(Is|Does) the ([a-z ]+?) (?:bigger than|fit in) the ([a-z ]+)\?")


def _size_statements(statements):
  """{(bigger, smaller)} as stated."""
  out = set()
  for line in statements:
    m = re.match(r"^The ([a-z ]+) is bigger than the ([a-z ]+)\.$", line.text)
    if m:
      out.add((m[1], m[2]))
    else:
      small, big = re.match(r"^The ([a-z ]+) fits inside the ([a-z ]+)\.$", line.text).groups()
      out.add((big, small))
  return out


@pytest.mark.parametrize("mode", MODES)
def test_task18_the_same_two_objects_compare_either_way_across_stories(mode):
  answers = collections.defaultdict(collections.Counter)
  for _, q in _questions(18, mode, 800):
    answers[_SIZE_Q.match(q.text).groups()][q.answer] += 1
  frequent = [c for c in answers.values() if sum(c.values()) >= 8]
  both = sum(len(c) == 2 for c in frequent) / len(frequent)
  assert len(frequent) >= 10 and both >= (1.0 if mode == "original" else 0.9), frequent  # 16 sizes: rarer pairs
  # a table (question form, object, object) -> answer fitted on other stories is near chance
  train, test = _questions(18, mode, 600, seed=0), _questions(18, mode, 600, seed=1)
  assert _lookup_accuracy(train, test, lambda _, q: _SIZE_Q.match(q.text).groups()) < 0.65


@pytest.mark.parametrize("mode", MODES)
def test_task18_every_question_needs_a_chain_of_statements(mode):
  for statements, q in _questions(18, mode, 200):
    _, x, y = _SIZE_Q.match(q.text).groups()
    stated = _size_statements(statements)
    assert (x, y) not in stated and (y, x) not in stated, (q, statements)
    assert len(q.supports) == 2 if mode == "original" else len(q.supports) >= 2, q


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task", [1, 2, 3, 4, 5, 11, 12, 13, 14])
def test_the_answer_is_not_always_in_the_last_statement(task, mode):
  qs = _questions(task, mode, 200)
  share = sum(bool(re.search(rf"\b{re.escape(q.answer)}\b", st[-1].text)) for st, q in qs) / len(qs)
  assert share < 0.8


def test_task5_other_lines_follow_the_give_and_leave_it_the_latest():
  gaps = collections.Counter()
  for statements, q in _questions(5, "original", 300):
    give = next(s for s in statements if s.id == q.supports[0])
    obj = re.search(r" the ([a-z ]+?) to [A-Z]", give.text)[1]
    after = [s for s in statements if s.id > give.id]
    gaps[len(after)] += 1
    assert not any(re.search(rf"\bthe {obj}\b", s.text) for s in after), (q, after)
  assert set(gaps) == set(range(6)), gaps  # the original: 0 to 5 lines


def _room_question(text):
  m = re.match(r"^(?:What|Which place) is (?:(?:north|south|east|west) of the ([a-z ]+)|the ([a-z ]+) "
               r"(?:north|south|east|west) of)\?", text)
  return m[1] or m[2]


@pytest.mark.parametrize("mode", MODES)
def test_task4_the_room_asked_about_has_two_stated_neighbours(mode):
  for statements, q in _questions(4, mode, 200):
    edges = [re.match(r"^The ([a-z ]+) is (\w+) of the ([a-z ]+)\.$", s.text).groups() for s in statements]
    room = _room_question(q.text)
    assert sum(room in (a, b) for a, _, b in edges) >= 2, (q, statements)
    if mode == "original":  # three rooms in a row, asked about the middle one
      axes = {d in ("north", "south") for _, d, _ in edges}
      assert len(edges) == 2 and len(axes) == 1


def _last_said(statements, who):
  return [s.text for s in statements if s.text.split()[0] == who][-1]


@pytest.mark.parametrize("task, bar", [(9, 0.7), (10, 0.6)])
def test_tasks_9_10_the_last_sentence_kind_does_not_give_the_answer(task, bar):
  qs = _questions(task, "original", 400)
  right = other_actor = 0
  for statements, q in qs:
    who = q.text.split()[1]
    last = _last_said(statements, who)
    guess = "maybe" if " or " in last else "no" if re.search(r" not |no longer|has left", last) else "yes"
    right += guess == q.answer
    other_actor += who not in {s.text.split()[0] for s in statements[-2:]}
  assert right / len(qs) < bar
  assert other_actor / len(qs) > 0.1  # as the original: about anyone said something of, not just now


def _most_frequent_colour(statements):
  colours = [s.text.split()[-1].rstrip(".") for s in statements if not re.search(r" is an? ", s.text)]
  return collections.Counter(colours).most_common(1)[0][0]


@pytest.mark.parametrize("mode", MODES)
def test_task16_is_drawn_as_in_the_original(mode):
  qs = _questions(16, mode, 400)
  right = 0
  for statements, q in qs:
    who = re.match(r"^What color is ([A-Z][a-z]+)\?", q.text)[1]
    kind, colour, first = {}, collections.defaultdict(set), {}
    for s in statements:
      m = re.match(r"^([A-Z][a-z]+) is an? ([a-z]+)\.$", s.text)
      if m:
        kind[m[1]], first[m[1]] = m[2], s.id
      else:
        name, c = re.match(r"^([A-Z][a-z]+) is ([a-z]+)\.$", s.text).groups()
        assert name in first, "an actor's species comes before its colour"
        colour[kind[name]].add(c)
    assert all(len(c) == 1 for c in colour.values())
    assert len({next(iter(c)) for c in colour.values()}) == len(colour), "one colour per species"
    peers = [a for a in kind if a != who and kind[a] == kind[who]]
    lines = {s.text: s.id for s in statements}
    assert set(q.supports) == {first[who]} | {first[a] for a in peers} | {
        lines[f"{a} is {q.answer}."] for a in peers}
    right += _most_frequent_colour(statements) == q.answer
  # a forced second member of the asked species made "the most frequent colour" right about 2/3 of the time
  assert right / len(qs) < 0.5


def _mixed_axis(statements, q):
  """Whether no chain of statements along the question's axis links its two shapes ("above" is directly
  above, so the answer comes from the other axis)."""
  axis_of = {"to the left of": 0, "to the right of": 0, "above": 1, "below": 1}
  rels = "|".join(axis_of)
  x, rel, y = re.match(rf"^Is the ([a-z ]+?) ({rels}) the ([a-z ]+)\?", q.text).groups()
  links = collections.defaultdict(set)
  for s in statements:
    a, r, b = re.match(rf"^The ([a-z ]+?) is ({rels}) the ([a-z ]+)\.$", s.text).groups()
    if axis_of[r] == axis_of[rel]:
      links[a].add(b)
      links[b].add(a)
  todo, seen = [x], {x}
  while todo:
    for n in links[todo.pop()] - seen:
      seen.add(n)
      todo.append(n)
  return y not in seen


@pytest.mark.parametrize("mode", MODES)
def test_task17_asks_across_axes_as_the_original(mode):
  qs = _questions(17, mode, 200)
  mixed = sum(_mixed_axis(st, q) for st, q in qs) / len(qs)
  assert mixed > 0.1
  assert 0.4 < sum(q.answer == "yes" for _, q in qs) / len(qs) < 0.6


def test_original_task20_story_shape():
  for story in _stories(20, "original", 50):
    lines = list(story)
    assert len(lines) == 24 and sum(line.is_question for line in lines) == 12
    agents = {re.match(r"^([A-Z][a-z]+) is [a-z]+\.$", line.text)[1] for line in lines
              if re.match(r"^[A-Z][a-z]+ is [a-z]+\.$", line.text)}
    assert len(agents) == 4
    for action, q in zip(lines[::2], lines[1::2]):  # each question right after its action, same agent
      assert not action.is_question and q.is_question and action.text.split()[0] == re.findall(
          r"[A-Z][a-z]+", q.text)[1]
      kind = ("Where will" if re.match(r"^[A-Z][a-z]+ is [a-z]+\.$", action.text) else
              "Why did .* go to" if " to the " in action.text else "Why did .* get")
      assert re.match(kind, q.text), (action, q)


def test_original_story_shapes_of_tasks_12_and_15():
  for story in _stories(12, "original", 50):
    assert all(" and " in line.text for line in story if not line.is_question)  # only pairs move
  for story in _stories(15, "original", 50):
    assert sum(line.is_question for line in story) == 4  # every animal-owner is asked about


_ROOMS = {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"}
RELEASED_ANSWERS = {  # the answers of the released v1.2 files (en), per task
    1: _ROOMS, 2: _ROOMS, 3: _ROOMS, 4: _ROOMS, 11: _ROOMS, 12: _ROOMS, 13: _ROOMS,
    5: {"Bill", "Fred", "Jeff", "Mary", "apple", "football", "milk"}, 6: {"yes", "no"}, 9: {"yes", "no"},
    7: {"none", "one", "two", "three"}, 10: {"yes", "no", "maybe"}, 17: {"yes", "no"}, 18: {"yes", "no"},
    14: {"bedroom", "cinema", "kitchen", "office", "park", "school"}, 15: {"cat", "mouse", "sheep", "wolf"},
    16: {"gray", "green", "white", "yellow"},
    19: {"e,e", "e,n", "e,s", "n,e", "n,n", "n,w", "s,e", "s,s", "s,w", "w,n", "w,s", "w,w"},
    20: {"bedroom", "bored", "garden", "hungry", "kitchen", "thirsty", "tired"},
}


@pytest.mark.parametrize("task", range(1, 21))
def test_original_mode_answers_are_the_released_answers(task):
  answers = {q.answer for _, q in _questions(task, "original", 300)}
  if task == 8:  # lists: every item an object, and "nothing"
    assert {item for a in answers for item in a.split(",")} == {"apple", "football", "milk", "nothing"}
  else:
    assert answers == RELEASED_ANSWERS[task]
