"""Tasks 4, 17, 18, 19: relations in space and size. Entities get true positions (a grid) or sizes (an
order drawn per story); statements are drawn from those, and questions are only asked when the
statements imply the answer, which is then read off the positions or sizes."""

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
  """Two-argument relations: "What is north of the kitchen?" / "What is the kitchen north of?".

  The room asked about always has two stated neighbours, so the answer needs the direction, not just the
  other room of the one statement that names it. The original has three rooms in a row, two statements
  in either order and one question about the middle room; synthetic mode grows a bigger map.
  """
  rooms = story_places(vocab, rng)
  rng.shuffle(rooms)
  if vocab.varied_lengths:
    pos, edges = {rooms[0]: (0, 0)}, []
    for _ in range(rng.randint(2, 5)):
      _grow(rng, pos, edges, rooms)
  else:
    direction, (a, b, c) = rng.choice(("north", "east")), rooms[:3]
    edges = [(b, direction, a), (c, direction, b)]
  rng.shuffle(edges)
  story, neighbours = StoryBuilder(), {}
  for a, d, b in edges:  # a is d of b
    line = story.say(_say_edge(rng, a, d, b))
    neighbours.setdefault(b, []).append((a, d, line))
    neighbours.setdefault(a, []).append((b, OPPOSITE[d], line))
  hubs = [room for room, near in neighbours.items() if len(near) >= 2]
  for _ in range(shape(vocab, rng, 1, 1, 3)):
    room = rng.choice(hubs)
    other, d, line = rng.choice(neighbours[room])  # other is d of room
    if rng.random() < 0.5:
      story.ask(vocab.say(rng, "q_dir_what", d=d, p=room), other, (line,))
    else:
      story.ask(vocab.say(rng, "q_dir_of", d=OPPOSITE[d], p=room), other, (line,))
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
_INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above"}


def _shapes(rng: random.Random, vocab: Vocab, k: int = 3) -> list[str]:
  """`k` shapes as the original draws them: plain ("triangle") or coloured ("pink triangle"), two colours of
  one kind allowed, but never a plain kind next to a coloured one of the same kind (which would be ambiguous)."""
  pool = list(vocab.shapes) + [f"{c} {s}" for s in vocab.shapes for c in vocab.shape_colors]
  names: list[str] = []
  while len(names) < k:
    name = rng.choice(pool)
    kind = name.split()[-1]
    if name not in names and not any(n.split()[-1] == kind and (n == kind or name == kind) for n in names):
      names.append(name)
  return names


def task17(rng: random.Random, vocab: Vocab) -> Story:
  """Positional reasoning. As in the original, three shapes are placed by a walk on a grid, each next to
  the previous one ("above" is directly above), and each question asks about two random shapes along an
  axis where they differ, yes or no at even odds. Besides inversions and transitivity this includes the
  mixed case: "The red square is above the blue square. The triangle is to the right of the blue square.
  Is the red square to the left of the triangle?" -- yes, since the red square is level with the blue one.
  The support of a question is the statements on the path between its two shapes."""
  names = _shapes(rng, vocab)
  coord = {names[0]: (0, 0)}
  story, link = StoryBuilder(), {}
  for prev, new in zip(names, names[1:]):
    while True:
      rel = rng.choice(list(_RELATIONS))
      axis, sign = _RELATIONS[rel]
      pos = list(coord[prev])
      pos[axis] += sign  # new is `rel` prev
      if tuple(pos) not in coord.values():
        break
    coord[new] = tuple(pos)
    if rng.random() < 0.5:
      line = story.say(f"The {new} is {rel} the {prev}.")
    else:
      line = story.say(f"The {prev} is {_INVERSE[rel]} the {new}.")
    link[prev, new] = link[new, prev] = line
  for _ in range(shape(vocab, rng, 8, 2, 8)):
    x, y = rng.sample(names, 2)
    axis = rng.choice([ax for ax in (0, 1) if coord[x][ax] != coord[y][ax]])
    truth = rng.random() < 0.5
    above = coord[x][axis] > coord[y][axis]
    rel = next(r for r, (ax, sign) in _RELATIONS.items() if ax == axis and (sign > 0) == (above == truth))
    i, j = sorted((names.index(x), names.index(y)))
    lines = [link[names[k], names[k + 1]] for k in range(i, j)]
    story.ask(f"Is the {x} {rel} the {y}?", "yes" if truth else "no", lines)
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


def _two_apart(edges, objects) -> bool:
  """Whether some pair is related through exactly two statements and by none directly."""
  return any((x, z) not in edges and (x, y) in edges and (y, z) in edges
             for x in objects for y in objects for z in objects if x != z)


def task18(rng: random.Random, vocab: Vocab) -> Story:
  """Size reasoning: "Does the box fit in the suitcase?" from stated relations, by transitivity.

  Each story draws its own size order (no object is always the biggest), so the same two objects compare
  either way across stories and only the statements give the answer. Questions ask about pairs that no
  statement relates directly, through a chain of two statements (the original's only kind) or, in
  synthetic mode, longer; the first round starts with such a chain. The four question forms make the
  answer yes or no at even odds.
  """
  objects = rng.sample(vocab.sizes, min(len(vocab.sizes), shape(vocab, rng, 6, 4, 8)))
  rank = {o: i for i, o in enumerate(objects)}  # this story's order, biggest first
  story, edges, asked = StoryBuilder(), {}, set()
  for round_ in range(shape(vocab, rng, 2, 1, 4)):
    new = []
    if round_ == 0:
      a, b, c = sorted(rng.sample(objects, 3), key=rank.get)
      new = [(a, b), (b, c)]
    for _ in range(shape(vocab, rng, 4, 2, 5) - len(new)):  # as the original: no relation that would
      x, y = sorted(rng.sample(objects, 2), key=rank.get)     # leave no two-statement question to ask
      known = {**edges, **dict.fromkeys(new, 0), (x, y): 0}
      if (x, y) not in edges and (x, y) not in new and _two_apart(known, objects):
        new.append((x, y))
    rng.shuffle(new)
    for big, small in new:
      if rng.random() < 0.5:
        edges[big, small] = story.say(f"The {big} is bigger than the {small}.")
      else:
        edges[big, small] = story.say(f"The {small} fits inside the {big}.")
    chains = {(big, small): _bigger_chain(edges, big, small) for big in objects for small in objects
              if rank[big] < rank[small]}
    chains = {pair: chain for pair, chain in chains.items() if chain}
    options = [pair for pair, chain in chains.items() if len(chain) >= 2]
    if not vocab.varied_lengths:
      options = [pair for pair in options if len(chains[pair]) == 2] or options
    options = [pair for pair in options if pair not in asked] or options
    big, small = rng.choice(options)
    asked.add((big, small))
    text, answer = rng.choice([(f"Is the {big} bigger than the {small}?", "yes"),
                               (f"Does the {small} fit in the {big}?", "yes"),
                               (f"Is the {small} bigger than the {big}?", "no"),
                               (f"Does the {big} fit in the {small}?", "no")])
    story.ask(text, answer, chains[big, small])
  return story.story()
