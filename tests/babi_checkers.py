"""Independent answer checkers for the 20 bAbI tasks.

Written apart from the generator and importing none of it (only the file parser's `Line`): each checker
reads the statements' TEXT with its own regular expressions and verb lexicon, re-derives the answer as a
careful reader would, and reports disagreements. They also work on official bAbI files.
"""

from __future__ import annotations

import collections
import re

MOVE_VERBS = ("went back", "went", "journeyed", "travelled", "moved", "walked", "ran", "headed", "strolled",
              "hurried", "wandered", "returned", "made it")
GET_VERBS = ("picked up", "got", "grabbed", "took hold of", "took", "collected", "fetched", "lifted", "snatched")
DROP_VERBS = ("dropped", "discarded", "put down", "left", "set down", "abandoned", "got rid of")
GIVE_VERBS = ("handed over", "gave", "handed", "passed", "offered", "delivered")
NUMBERS = ("none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
TIME_ORDER = ("yesterday", "this morning", "this afternoon", "this evening")
PRONOUNS = ("he", "she", "they")


def _alt(words):
  return "(?:" + "|".join(re.escape(w) for w in words) + ")"


NAME = r"[A-Z][a-z]+"
MOVE = re.compile(rf"^(?P<who>{NAME}(?: and {NAME})?|he|she|they) {_alt(MOVE_VERBS)} to the (?P<place>[a-z ]+)\.$")
GET = re.compile(rf"^(?P<who>{NAME}) {_alt(GET_VERBS)} the (?P<obj>[a-z ]+?)(?: there)?\.$")
DROP = re.compile(rf"^(?P<who>{NAME}) (?:{_alt(DROP_VERBS)} the (?P<obj>[a-z ]+?)|put the (?P<obj2>[a-z ]+) down)"
                  r"(?: there)?\.$")
GIVE = re.compile(rf"^(?P<who>{NAME}) {_alt(GIVE_VERBS)} the (?P<obj>[a-z ]+) to (?P<to>{NAME})\.$")


def strip_adverb(text: str) -> str:
  """'After that he went to the garden.' -> 'he went to the garden.' (any words before a pronoun)."""
  m = re.match(r"^[A-Z][a-z]*(?: [a-z]+)* (he|she|they) (.*)$", text)
  return f"{m.group(1)} {m.group(2)}" if m else text


class House:
  """What a reader knows after the statements: where people are, who holds what, where things lie."""

  def __init__(self):
    self.at, self.at_line = {}, {}
    self.holds = collections.defaultdict(list)
    self.floor = {}
    self.history = collections.defaultdict(list)  # object -> [place, ...] without repeats in a row
    self.gives = []  # (giver, obj, receiver, line)
    self.last_subject = None
    self.last_line = None

  def _note_place(self, obj, place):
    if not self.history[obj] or self.history[obj][-1] != place:
      self.history[obj].append(place)

  def read(self, line):
    text = strip_adverb(line.text)
    m = MOVE.match(text)
    if m:
      who = m["who"]
      people = self.last_subject if who in PRONOUNS else tuple(who.split(" and "))
      for person in people:
        self.at[person], self.at_line[person] = m["place"], line.id
        for obj in self.holds[person]:
          self._note_place(obj, m["place"])
      self.last_subject = people
      return
    m = GET.match(text)
    if m:
      self.holds[m["who"]].append(m["obj"])
      self.floor.pop(m["obj"], None)
      self._note_place(m["obj"], self.at[m["who"]])
      self.last_subject = (m["who"],)
      return
    m = DROP.match(text)
    if m:
      obj = m["obj"] or m["obj2"]
      self.holds[m["who"]].remove(obj)
      self.floor[obj] = self.at[m["who"]]
      self.last_subject = (m["who"],)
      return
    m = GIVE.match(text)
    if m:
      self.holds[m["who"]].remove(m["obj"])
      self.holds[m["to"]].append(m["obj"])
      self.gives.append((m["who"], m["obj"], m["to"], line.id))
      return
    raise ValueError(f"house checker cannot read {line.text!r}")

  def where_object(self, obj):
    for person, objs in self.holds.items():
      if obj in objs:
        return self.at[person]
    return self.floor[obj]


def _house(statements) -> House:
  house = House()
  for line in statements:
    house.read(line)
  return house


def _where_person(statements, q):
  m = re.match(rf"^(?:Where is ({NAME})(?: now)?|Where can ({NAME}) be found)\?\s*$", q)
  return _house(statements).at[m[1] or m[2]]


def solve_where_object(statements, q):
  m = re.match(r"^(?:Where is the ([a-z ]+?)(?: now)?|Where can the ([a-z ]+) be found)\?\s*$", q)
  return _house(statements).where_object(m[1] or m[2])


def solve_where_before(statements, q):
  m = re.match(r"^Where was the ([a-z ]+?) (?:just )?before the ([a-z ]+)\?\s*$", q)
  places = _house(statements).history[m[1]]
  return places[places.index(m[2]) - 1]


def solve_direction(statements, q):
  rel = {}  # (a, direction) -> b meaning "a is direction of b"
  opposite = {"north": "south", "south": "north", "east": "west", "west": "east"}
  for line in statements:
    a, d, b = re.match(r"^The ([a-z ]+) is (north|south|east|west) of the ([a-z ]+)\.$", line.text).groups()
    rel[b, d] = a          # what is d of b -> a
    rel[a, opposite[d]] = b
  m = re.match(r"^(?:What|Which place) is (north|south|east|west) of the ([a-z ]+)\?\s*$", q)
  if m:
    return rel[m[2], m[1]]
  m = re.match(r"^(?:What|Which place) is the ([a-z ]+) (north|south|east|west) of\?\s*$", q)
  return rel[m[1], opposite[m[2]]]


def solve_give(statements, q):
  gives = _house(statements).gives
  patterns = [
      (rf"^Who gave the ([a-z ]+) to ({NAME})\?", lambda g, m: g[1] == m[1] and g[2] == m[2], 0),
      (r"^Who gave the ([a-z ]+)\?", lambda g, m: g[1] == m[1], 0),
      (r"^Who received the ([a-z ]+)\?", lambda g, m: g[1] == m[1], 2),
      (rf"^What did ({NAME}) give to ({NAME})\?", lambda g, m: g[0] == m[1] and g[2] == m[2], 1),
      (rf"^Who did ({NAME}) give the ([a-z ]+) to\?", lambda g, m: g[0] == m[1] and g[1] == m[2], 2),
  ]
  for pattern, matches, field in patterns:
    m = re.match(pattern, q)
    if m:
      return [g for g in gives if matches(g, m)][-1][field]
  raise ValueError(q)


IS_IN = re.compile(rf"^Is ({NAME}) (?:in|inside|at) the ([a-z ]+)\?\s*$")


def solve_yes_no_place(statements, q):
  who, place = IS_IN.match(q).groups()
  return "yes" if _house(statements).at[who] == place else "no"


def _carrying(statements, q):
  m = re.match(rf"^(?:How many|What) (?:objects is|things is|items does|is|does) ({NAME}) "
               r"(?:carrying|holding|have)\?\s*$", q)
  return _house(statements).holds[m[1]]


def solve_negation_or_maybe(statements, q):
  """Tasks 9 and 10: positive moves, 'not in', and 'either ... or'."""
  know = {}
  for line in statements:
    t = line.text
    m = re.match(rf"^({NAME}) is (?:in|inside|at) the ([a-z ]+)\.$", t) or MOVE.match(t)
    if m and not re.search(r" or ", t):
      know[m[1]] = ("in", m[2])
      continue
    m = re.match(rf"^({NAME}) (?:is not in|is no longer in|is no longer inside|has left) the ([a-z ]+)\.$", t)
    if m:
      know[m[1]] = ("not", m[2])
      continue
    m = re.match(rf"^({NAME}) is (?:either in|in|perhaps in) the ([a-z ]+) or (?:in |maybe in )?the ([a-z ]+)\.$", t)
    know[m[1]] = ("either", m[2], m[3])
  who, place = IS_IN.match(q).groups()
  kind, *places = know[who]
  if kind == "in":
    return "yes" if places[0] == place else "no"
  if kind == "not":
    if places[0] != place:
      raise ValueError(f"{q!r} cannot be answered from 'not in the {places[0]}'")
    return "no"
  return "maybe" if place in places else "no"


def solve_time(statements, q):
  timeline = collections.defaultdict(dict)
  times = "|".join(TIME_ORDER)
  for line in statements:
    m = re.match(rf"^(?:({times}) )?(.*?)(?: ({times}))?\.$", line.text, flags=re.I)
    when = (m[1] or m[3]).lower()
    move = MOVE.match(m[2][0].upper() + m[2][1:] + ".")
    timeline[move["who"]][TIME_ORDER.index(when)] = move["place"]
  who, place = re.match(rf"^Where was ({NAME}) (?:just )?before the ([a-z ]+)\?\s*$", q).groups()
  slots = timeline[who]
  slot = next(s for s, p in slots.items() if p == place)
  return slots[slot - 1]


def _plural_of(singular, plural):
  irregular = {"mouse": "mice", "goose": "geese", "sheep": "sheep", "deer": "deer", "wolf": "wolves"}
  if singular in irregular:
    return irregular[singular] == plural
  return plural in (singular + "s", singular + "es")


def solve_deduction(statements, q):
  fears, kind = {}, {}
  for line in statements:
    m = re.match(r"^([A-Z][a-z]+) are afraid of ([a-z]+)\.$", line.text)
    if m:
      fears[m[1].lower()] = m[2]
    else:
      m = re.match(rf"^({NAME}) is an? ([a-z]+)\.$", line.text)
      kind[m[1]] = m[2]
  who = re.match(rf"^What is ({NAME}) afraid of\?\s*$", q)[1]
  singular = kind[who]
  feared = next(fears[p] for p in fears if _plural_of(singular, p))
  return feared  # plural; compared with the answer through _plural_of by the caller


def solve_induction(statements, q):
  kind, color = {}, {}
  for line in statements:
    m = re.match(rf"^({NAME}) is an? ([a-z]+)\.$", line.text)
    if m:
      kind[m[1]] = m[2]
    else:
      m = re.match(rf"^({NAME}) is ([a-z]+)\.$", line.text)
      color[m[1]] = m[2]
  who = re.match(rf"^What color is ({NAME})\?\s*$", q)[1]
  seen = {color[p] for p in kind if p != who and kind[p] == kind[who] and p in color}
  if len(seen) != 1:
    raise ValueError(f"induction for {who} is not unique: {sorted(seen)}")
  return seen.pop()


_POSITION = {"to the left of": (0, -1), "to the right of": (0, 1), "above": (1, 1), "below": (1, -1)}


def solve_position(statements, q):
  """Places the shapes on a grid from the statements ("above" is directly above: the other coordinate is
  the same), then compares the two asked about on the question's axis; level on that axis: not asked."""
  rels = "|".join(_POSITION)
  facts = []
  for line in statements:
    x, rel, y = re.match(rf"^The ([a-z ]+?) is ({rels}) the ([a-z ]+)\.$", line.text).groups()
    facts.append((x, y, *_POSITION[rel]))
  coord = {facts[0][1]: (0, 0)}
  for _ in facts:  # enough passes to place a chain of any order
    for x, y, axis, sign in facts:
      if (x in coord) != (y in coord):
        known, other, step = (y, x, sign) if y in coord else (x, y, -sign)
        pos = list(coord[known])
        pos[axis] += step
        coord[other] = tuple(pos)
  x, rel, y = re.match(rf"^Is the ([a-z ]+?) ({rels}) the ([a-z ]+)\?\s*$", q).groups()
  axis, sign = _POSITION[rel]
  if x not in coord or y not in coord or coord[x][axis] == coord[y][axis]:
    raise ValueError(f"{q!r} does not follow from the statements")
  return "yes" if (coord[x][axis] - coord[y][axis]) * sign > 0 else "no"


def solve_size(statements, q):
  bigger = collections.defaultdict(set)
  for line in statements:
    m = re.match(r"^The ([a-z ]+) is bigger than the ([a-z ]+)\.$", line.text)
    if m:
      bigger[m[1]].add(m[2])
    else:
      small, big = re.match(r"^The ([a-z ]+) fits inside the ([a-z ]+)\.$", line.text).groups()
      bigger[big].add(small)

  def reaches(a, b):
    todo, seen = [a], {a}
    while todo:
      for n in bigger[todo.pop()] - seen:
        if n == b:
          return True
        seen.add(n)
        todo.append(n)
    return False

  m = re.match(r"^Does the ([a-z ]+) fit in the ([a-z ]+)\?\s*$", q)
  small, big = (m[1], m[2]) if m else re.match(r"^Is the ([a-z ]+) bigger than the ([a-z ]+)\?\s*$", q).groups()[::-1]
  if reaches(big, small):
    return "yes"
  if reaches(small, big):
    return "no"
  raise ValueError(f"{q!r} does not follow from the statements")


def solve_path(statements, q):
  step = {"north": "n", "south": "s", "east": "e", "west": "w"}
  back = {"n": "s", "s": "n", "e": "w", "w": "e"}
  edges = collections.defaultdict(dict)
  for line in statements:
    a, d, b = re.match(r"^The ([a-z ]+) is (north|south|east|west) of the ([a-z ]+)\.$", line.text).groups()
    edges[b][a] = step[d]          # from b go d to reach a
    edges[a][b] = back[step[d]]
  m = re.match(r"^(?:How do you go|What is the way) from the ([a-z ]+) to the ([a-z ]+)\?\s*$", q)
  start, goal = m.groups()
  depth, paths, frontier = {start: 0}, {start: [[]]}, [start]  # all shortest paths, level by level
  while frontier and goal not in depth:
    nxt_frontier = []
    for node in frontier:
      for nxt, d in edges[node].items():
        if depth.setdefault(nxt, depth[node] + 1) == depth[node] + 1:
          paths.setdefault(nxt, []).extend(p + [d] for p in paths[node])
          if nxt not in nxt_frontier:
            nxt_frontier.append(nxt)
    frontier = nxt_frontier
  found = paths.get(goal, [])
  if len(found) != 1:
    raise ValueError(f"{q!r} has {len(found)} shortest paths")
  return ",".join(found[0])


def motivation_map(stories) -> dict[str, str]:
  """Feeling -> place, learned from the text as a reader would: where do people who feel F go next?"""
  votes = collections.defaultdict(collections.Counter)
  for story in stories:
    feeling = {}
    for line in story:
      if line.answer is not None:
        continue
      m = re.match(rf"^({NAME}) is ([a-z]+)\.$", line.text)
      if m:
        feeling[m[1]] = m[2]
        continue
      m = MOVE.match(line.text)
      if m and m["who"] in feeling:
        votes[feeling[m["who"]]][m["place"]] += 1
  return {f: c.most_common(1)[0][0] for f, c in votes.items()}


def solve_motivation(statements, q, places=None):
  feeling = {}
  for line in statements:
    m = re.match(rf"^({NAME}) is ([a-z]+)\.$", line.text)
    if m:
      feeling[m[1]] = m[2]
  m = re.match(rf"^Where will ({NAME}) go\?\s*$", q)
  if m:
    return places[feeling[m[1]]]
  m = re.match(rf"^Why did ({NAME}) (?:go to|get) the ([a-z ]+)\?\s*$", q)
  return feeling[m[1]]


SOLVERS = {
    1: _where_person, 2: solve_where_object, 3: solve_where_before, 4: solve_direction, 5: solve_give,
    6: solve_yes_no_place, 7: lambda s, q: NUMBERS[len(_carrying(s, q))],
    8: lambda s, q: ",".join(_carrying(s, q)) or "nothing", 9: solve_negation_or_maybe,
    10: solve_negation_or_maybe, 11: _where_person, 12: _where_person, 13: _where_person, 14: solve_time,
    15: solve_deduction, 16: solve_induction, 17: solve_position, 18: solve_size, 19: solve_path,
    20: solve_motivation,
}


def same_answer(task: int, derived: str, given: str) -> bool:
  if task == 8:
    return sorted(derived.split(",")) == sorted(given.split(","))
  if task == 15:
    return _plural_of(given, derived)
  return derived == given


def check_stories(task: int, stories) -> list[str]:
  """Every disagreement between the file's answers and the re-derived ones, plus malformed supports."""
  errors = []
  places = motivation_map(stories) if task == 20 else None
  for n, story in enumerate(stories):
    statements = []
    for line in story:
      if line.answer is None:
        statements.append(line)
        continue
      statement_ids = {s.id for s in statements}
      if not line.supports or not set(line.supports) <= statement_ids:
        errors.append(f"story {n} line {line.id}: supports {line.supports} are not earlier statements")
      try:
        derived = (SOLVERS[task](statements, line.text, places) if task == 20
                   else SOLVERS[task](statements, line.text))
      except (ValueError, KeyError, IndexError, AttributeError, TypeError, StopIteration) as e:
        errors.append(f"story {n} line {line.id}: cannot answer {line.text!r}: {type(e).__name__} {e}")
        continue
      if not same_answer(task, derived, line.answer):
        errors.append(f"story {n} line {line.id}: {line.text!r} file says {line.answer!r}, "
                      f"checker derives {derived!r}")
  return errors
