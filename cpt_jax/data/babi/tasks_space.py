"""Tasks 4, 17, 18, 19: relations in space and size. Entities get true positions (a grid) or sizes (a
fixed ladder); statements are drawn from those, and questions are only asked when the statements imply
the answer, which is then read off the positions or sizes."""

from __future__ import annotations

import random

from cpt_jax.data.babi.fileformat import Story
from cpt_jax.data.babi.tasks_house import shape, story_places
from cpt_jax.data.babi.vocab import Vocab
from cpt_jax.data.babi.world import StoryBuilder

COMPASS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


def _step(pos, direction):
  dx, dy = COMPASS[direction]
  return pos[0] + dx, pos[1] + dy


def _grow(rng, pos: dict, edges: list, rooms: list, anchor=None):
  """Puts the next unused room next to a placed one (`anchor` if given) in a free cell; adds the edge
  (new room, direction, old room), meaning the new room is `direction` of the old. Returns it or None."""
  taken = set(pos.values())
  candidates = [(a, d) for a in ([anchor] if anchor else list(pos)) for d in COMPASS
                if _step(pos[a], d) not in taken]
  free = [r for r in rooms if r not in pos]
  if not candidates or not free:
    return None
  old, direction = rng.choice(candidates)
  new = free[0]
  pos[new] = _step(pos[old], direction)
  edges.append((new, direction, old))
  return new


def _say_edge(rng, a, direction, b) -> str:
  """"The a is direction of the b." or the same fact from b's side."""
  if rng.random() < 0.5:
    return f"The {a} is {direction} of the {b}."
  return f"The {b} is {OPPOSITE[direction]} of the {a}."


def task4(rng: random.Random, vocab: Vocab) -> Story:
  """Two-argument relations: "What is north of the kitchen?" / "What is the kitchen north of?"."""
  rooms = story_places(vocab, rng)
  rng.shuffle(rooms)
  pos, edges = {rooms[0]: (0, 0)}, []
  for _ in range(shape(vocab, rng, 2, 2, 5)):
    _grow(rng, pos, edges, rooms)
  story, lines = StoryBuilder(), []
  for a, d, b in edges:
    lines.append(story.say(_say_edge(rng, a, d, b)))
  for _ in range(shape(vocab, rng, 1, 1, 3)):
    i = rng.randrange(len(edges))
    a, d, b = edges[i]
    if rng.random() < 0.5:  # ask about a or about b, in either wording
      a, d, b = b, OPPOSITE[d], a
    if rng.random() < 0.5:
      story.ask(vocab.say(rng, "q_dir_what", d=d, p=b), a, (lines[i],))
    else:
      story.ask(vocab.say(rng, "q_dir_of", d=d, p=a), b, (lines[i],))
  return story.story()


def task19(rng: random.Random, vocab: Vocab) -> Story:
  """Path finding over stated compass adjacencies; the stated graph is a tree, so the path is unique."""
  rooms = story_places(vocab, rng)
  rng.shuffle(rooms)
  length = shape(vocab, rng, 2, 2, 4)
  decoys = shape(vocab, rng, 3, 1, 5)
  pos, edges = {rooms[0]: (0, 0)}, []
  path = [rooms[0]]
  while len(path) <= length:
    new = _grow(rng, pos, edges, rooms, anchor=path[-1])
    if new is None:
      return task19(rng, vocab)
    path.append(new)
  for _ in range(decoys):
    _grow(rng, pos, edges, rooms)
  directions = [e[1] for e in edges[:length]]
  order = list(range(len(edges)))
  rng.shuffle(order)
  story, line_of = StoryBuilder(), {}
  for i in order:
    line_of[i] = story.say(_say_edge(rng, *edges[i]))
  story.ask(vocab.say(rng, "q_path", p=path[0], q=path[-1]), ",".join(d[0] for d in directions),
            [line_of[i] for i in range(length)])
  return story.story()


_RELATIONS = {"to the left of": (0, -1), "to the right of": (0, 1), "above": (1, 1), "below": (1, -1)}


def _implied(facts, x, y, axis):
  """Sign of coord[x] - coord[y] on `axis` implied by the statements (directly or via one shape), and
  the statement lines used; (0, ()) when the statements leave it open."""
  def direct(p, q):
    for a, b, ax, sign, line in facts:
      if ax == axis and (a, b) == (p, q):
        return sign, (line,)
      if ax == axis and (a, b) == (q, p):
        return -sign, (line,)
    return 0, ()
  sign, lines = direct(x, y)
  if sign:
    return sign, lines
  for z in {f[0] for f in facts} | {f[1] for f in facts}:
    s1, l1 = direct(x, z)
    s2, l2 = direct(z, y)
    if s1 and s1 == s2:
      return s1, l1 + l2
  return 0, ()


def task17(rng: random.Random, vocab: Vocab) -> Story:
  """Positional reasoning: shapes beside / above each other; yes/no questions needing inversion and
  one step of transitivity."""
  kinds = rng.sample(vocab.shapes, 3)
  names = [k if rng.random() < 0.3 else f"{rng.choice(vocab.shape_colors)} {k}" for k in kinds]
  a, b, c = names
  coord = {a: [0, 0]}
  axis1, sign1 = rng.randrange(2), rng.choice((1, -1))
  coord[b] = list(coord[a])
  coord[b][axis1] += sign1
  anchor = rng.choice((a, b))
  axis2 = axis1 if rng.random() < 0.5 else 1 - axis1
  sign2 = sign1 if axis2 == axis1 else rng.choice((1, -1))
  anchor = b if axis2 == axis1 else anchor
  coord[c] = list(coord[anchor])
  coord[c][axis2] += sign2
  facts, story = [], StoryBuilder()
  for x, y in ((b, a), (c, anchor)):
    axis = 0 if coord[x][0] != coord[y][0] else 1
    sign = 1 if coord[x][axis] > coord[y][axis] else -1
    rel = next(r for r, v in _RELATIONS.items() if v == (axis, sign))
    facts.append((x, y, axis, sign, story.say(f"The {x} is {rel} the {y}.")))
  candidates = []
  for x in names:
    for y in names:
      for rel, (axis, sign) in _RELATIONS.items():
        implied, lines = _implied(facts, x, y, axis) if x != y else (0, ())
        if implied:
          truth = (coord[x][axis] - coord[y][axis]) * sign > 0
          candidates.append((f"Is the {x} {rel} the {y}?", "yes" if truth else "no", lines))
  rng.shuffle(candidates)
  for text, answer, lines in candidates[:shape(vocab, rng, 8, 2, 8)]:
    story.ask(text, answer, lines)
  return story.story()


def _bigger_chain(edges, big, small):
  """Statement lines of a chain big > ... > small through stated edges (BFS), or None."""
  frontier, seen = [(big, ())], {big}
  while frontier:
    node, lines = frontier.pop(0)
    if node == small:
      return lines
    for (x, y), line in edges.items():
      if x == node and y not in seen:
        seen.add(y)
        frontier.append((y, lines + (line,)))
  return None


def task18(rng: random.Random, vocab: Vocab) -> Story:
  """Size reasoning over a fixed size ladder: "Does the box fit in the suitcase?" by transitivity."""
  objects = rng.sample(vocab.sizes, min(len(vocab.sizes), shape(vocab, rng, 6, 4, 8)))
  rank = {o: vocab.sizes.index(o) for o in objects}  # lower rank = bigger
  story, edges = StoryBuilder(), {}
  for _ in range(shape(vocab, rng, 2, 1, 4)):
    for _ in range(shape(vocab, rng, 4, 2, 5)):
      x, y = sorted(rng.sample(objects, 2), key=rank.get)
      if (x, y) in edges:
        continue
      if rng.random() < 0.5:
        edges[x, y] = story.say(f"The {x} is bigger than the {y}.")
      else:
        edges[x, y] = story.say(f"The {y} fits inside the {x}.")
    askable = []
    for x in objects:
      for y in objects:
        if x != y:
          big, small = (x, y) if rank[x] < rank[y] else (y, x)
          chain = _bigger_chain(edges, big, small)
          if chain:
            askable.append((x, y, chain))
    long_ones = [q for q in askable if len(q[2]) > 1]
    x, y, chain = rng.choice(long_ones if long_ones and rng.random() < 0.7 else askable)
    if rng.random() < 0.5:
      story.ask(f"Does the {x} fit in the {y}?", "yes" if rank[x] > rank[y] else "no", chain)
    else:
      story.ask(f"Is the {x} bigger than the {y}?", "yes" if rank[x] < rank[y] else "no", chain)
  return story.story()
