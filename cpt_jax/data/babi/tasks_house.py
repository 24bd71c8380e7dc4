"""Tasks 1-3 and 5-8: people move around a house and handle objects; questions read the `World` state."""

from __future__ import annotations

import random

from cpt_jax.data.babi.fileformat import Story
from cpt_jax.data.babi.vocab import Vocab, actors_for
from cpt_jax.data.babi.world import StoryBuilder, World

NUMBER_WORDS = ("none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MAX_TRIES = 200


def shape(vocab: Vocab, rng: random.Random, original: int, lo: int, hi: int) -> int:
  """A story-shape count: the original's fixed value, or drawn from [lo, hi] in synthetic mode."""
  return rng.randint(lo, hi) if vocab.varied_lengths else original


def story_places(vocab: Vocab, rng: random.Random, pool=None) -> list[str]:
  """The places of one story: all original rooms, or a fresh subset of the large synthetic pool."""
  pool = list(dict.fromkeys(pool or vocab.rooms))  # pools may overlap (a museum is in both lists)
  return pool if not vocab.varied_lengths else rng.sample(pool, rng.randint(5, min(12, len(pool))))


def story_objects(vocab: Vocab, rng: random.Random, k: int = 3) -> list[str]:
  pool = vocab.objects[:3] if not vocab.varied_lengths else vocab.objects
  return rng.sample(pool, min(k if vocab.varied_lengths else 3, len(pool)))


def new_world(vocab, rng, task, objects=True) -> World:
  actors = actors_for(vocab, task, rng, 4 if not vocab.varied_lengths else rng.randint(3, 6))
  objs = story_objects(vocab, rng, rng.randint(2, 5)) if objects else []
  return World(rng, vocab, StoryBuilder(), actors, story_places(vocab, rng), objs)


def _run(world: World, rounds: int, min_gap: int, max_gap: int, weights, ask) -> Story:
  """`rounds` times: `min_gap..max_gap` actions, then more actions until `ask(world)` asks a question."""
  for _ in range(rounds):
    for _ in range(world.rng.randint(min_gap, max_gap)):
      world.random_action(weights)
    for _ in range(_MAX_TRIES):
      if ask(world):
        break
      world.random_action(weights)
  return world.story.story()


def task1(rng: random.Random, vocab: Vocab) -> Story:
  """Single supporting fact: "Where is Mary?" from Mary's last move."""
  world = new_world(vocab, rng, 1, objects=False)

  def ask(w: World) -> bool:
    actor = rng.choice(w.placed()) if w.placed() else None
    if actor is None:
      return False
    fact = w.actor_at[actor]
    w.story.ask(vocab.say(rng, "q_where", x=actor), fact.value, fact.support)
    return True

  gap = shape(vocab, rng, 2, 1, 4)
  return _run(world, shape(vocab, rng, 5, 1, 8), gap, gap, (1, 0, 0, 0), ask)


def task2(rng: random.Random, vocab: Vocab) -> Story:
  """Two supporting facts: where an object is = where its holder went (or where it was dropped)."""
  world = new_world(vocab, rng, 2)

  def ask(w: World) -> bool:
    known = [o for o in w.objects if w.where_object(o)]
    if not known:
      return False
    obj = rng.choice(known)
    fact = w.where_object(obj)
    w.story.ask(vocab.say(rng, "q_where", x=f"the {obj}"), fact.value, fact.support)
    return True

  return _run(world, shape(vocab, rng, 5, 1, 8), 2, shape(vocab, rng, 6, 2, 10), (5, 3, 1, 0), ask)


def task3(rng: random.Random, vocab: Vocab) -> Story:
  """Three supporting facts: "Where was the apple before the kitchen?" from the object's place history."""
  world = new_world(vocab, rng, 3)
  asked = set()

  def ask(w: World) -> bool:
    options = []
    for obj, history in w.obj_history.items():
      places = [f.value for f in history]
      for i in range(1, len(history)):
        if places.count(places[i]) == 1 and (obj, places[i]) not in asked:
          options.append((obj, i))
    if not options:
      return False
    obj, i = rng.choice(options)
    before, at = w.obj_history[obj][i - 1], w.obj_history[obj][i]
    asked.add((obj, at.value))
    w.story.ask(vocab.say(rng, "q_before", x=f"the {obj}", p=at.value), before.value,
                before.support + at.support)
    return True

  return _run(world, shape(vocab, rng, 5, 1, 6), 3, shape(vocab, rng, 8, 3, 12), (5, 3, 1, 0), ask)


def task5(rng: random.Random, vocab: Vocab) -> Story:
  """Three-argument relations: who gave what to whom. As in the original generator, every give (once two
  lines have passed since the last question) is asked about after 0-5 other lines, so the answer is not
  simply in the last line; none of them moves the same object or is another give between the same two
  people, so the asked give stays the latest one the question could mean."""
  world = new_world(vocab, rng, 5)
  weights, target, since = (4, 3, 1, 4), shape(vocab, rng, 5, 1, 8), 0
  for _ in range(_MAX_TRIES * target):
    if world.story.num_questions == target:
      break
    gives = len(world.gives)
    world.random_action(weights)
    since += 1
    if len(world.gives) == gives or since < 2:
      continue
    g = world.gives[-1]

    def unrelated(kind, args, g=g) -> bool:
      return g.obj not in args and not (kind == "give" and (args[0], args[2]) == (g.giver, g.receiver))

    for _ in range(rng.randint(0, 5)):
      world.random_action(weights, unrelated)
    text, answer = rng.choice([
        (f"Who gave the {g.obj} to {g.receiver}?", g.giver), (f"Who gave the {g.obj}?", g.giver),
        (f"Who received the {g.obj}?", g.receiver), (f"What did {g.giver} give to {g.receiver}?", g.obj),
        (f"Who did {g.giver} give the {g.obj} to?", g.receiver)])
    world.story.ask(text, answer, (g.line,))
    since = 0
  if world.story.num_questions == 0:
    return task5(rng, vocab)
  return world.story.story()


def task6(rng: random.Random, vocab: Vocab) -> Story:
  """Yes/no: "Is John in the kitchen?" from John's last move."""
  world = new_world(vocab, rng, 6)

  def ask(w: World) -> bool:
    if not w.placed():
      return False
    actor = rng.choice(w.placed())
    fact = w.actor_at[actor]
    yes = rng.random() < 0.5
    place = fact.value if yes else rng.choice([p for p in w.places if p != fact.value])
    w.story.ask(vocab.say(rng, "q_is_in", a=actor, p=place), "yes" if yes else "no", fact.support)
    return True

  return _run(world, shape(vocab, rng, 5, 1, 8), 2, shape(vocab, rng, 3, 2, 6), (5, 2, 1, 0), ask)


def _carrying_question(key: str, answer_of):
  def generate(rng: random.Random, vocab: Vocab) -> Story:
    world = new_world(vocab, rng, 7 if key == "q_count" else 8)

    def ask(w: World) -> bool:
      handled = [a for a in w.actors if w.carried[a] or a in w.last_loss]
      if not handled:
        return False
      actor = rng.choice(handled)
      held = w.carried[actor]
      support = [w.holder[o].support[0] for o in held] or [w.last_loss[actor]]
      w.story.ask(vocab.say(rng, key, a=actor), answer_of(held), support)
      return True

    return _run(world, shape(vocab, rng, 5, 1, 8), 2, shape(vocab, rng, 4, 2, 8), (4, 4, 2, 1), ask)

  return generate


task7 = _carrying_question("q_count", lambda held: NUMBER_WORDS[len(held)])
task7.__doc__ = "Counting: how many objects an actor carries, from pickups, drops and gives."
task8 = _carrying_question("q_list", lambda held: ",".join(held) or "nothing")
task8.__doc__ = "Lists: what an actor carries, in pickup order, or `nothing`."
