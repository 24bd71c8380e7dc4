"""Tasks 9-14: where people are, told with negation, uncertainty, pronouns, conjunctions or time words.

The simulation is `World` where it fits (11-13); 9, 10 and 14 keep their own small state because the
reader's knowledge is weaker than a location ("not in", "either ... or", a time-stamped history).
"""

from __future__ import annotations

import random

from cpt_jax.data.babi.fileformat import Story
from cpt_jax.data.babi.tasks_house import shape, story_places
from cpt_jax.data.babi.vocab import ORIGINAL_PLACES, Vocab, actors_for
from cpt_jax.data.babi.world import StoryBuilder, World

TIMES = ("yesterday", "this morning", "this afternoon", "this evening")


def _other(rng: random.Random, places, *not_these) -> str:
  return rng.choice([p for p in places if p not in not_these])


def _cast(vocab, rng, task, places_pool=None):
  actors = actors_for(vocab, task, rng, 4 if not vocab.varied_lengths else rng.randint(3, 6))
  return actors, story_places(vocab, rng, places_pool)


def _ask_yes_no_maybe(rng, vocab, story, actor, known, places):
  """Asks "Is X in P?" about one actor's knowledge: ("in", P), ("not", P) or ("either", P, Q). As in the
  original, a known place is asked about or swapped for another one at even odds, so whether the actor's
  last sentence was positive does not give the answer away."""
  kind, line, *where = known
  if kind == "in":
    answer, place = ("yes", where[0]) if rng.random() < 0.5 else ("no", _other(rng, places, where[0]))
  elif kind == "not":
    answer, place = "no", where[0]
  else:
    answer, place = rng.choice([("maybe", rng.choice(where)), ("no", _other(rng, places, *where))])
  story.ask(vocab.say(rng, "q_is_in", a=actor, p=place), answer, (line,))


def _knowledge_task(task: int, statement):
  """Tasks 9 and 10: `statement(rng, vocab, actor, places, prev)` says one fact, returns the knowledge.
  Questions ask about any actor said something of so far, as the original does, not only the last ones."""

  def generate(rng: random.Random, vocab: Vocab) -> Story:
    actors, places = _cast(vocab, rng, task, vocab.rooms + (vocab.outdoor if task == 10 else ()))
    story, known = StoryBuilder(), {}
    for _ in range(shape(vocab, rng, 5, 1, 8)):
      for _ in range(shape(vocab, rng, 2, 1, 4)):
        actor = rng.choice(actors)
        kind, text, *where = statement(rng, vocab, actor, places, known.get(actor))
        known[actor] = (kind, story.say(text), *where)
      actor = rng.choice(sorted(known))
      _ask_yes_no_maybe(rng, vocab, story, actor, known[actor], places)
    return story.story()

  return generate


def _negation_statement(rng, vocab, actor, places, prev):
  """A move (1/2), "X is in P" (1/4) or "X is not in P" (1/4): the original's mix."""
  here = prev[2] if prev and prev[0] == "in" else None
  roll = rng.random()
  if roll < 0.5:
    place = _other(rng, places, here)
    return "in", vocab.say(rng, "move", a=actor, p=place), place
  if roll < 0.75:
    place = _other(rng, places, here)
    return "in", vocab.say(rng, "is_in", a=actor, p=place), place
  place = here if here and rng.random() < 0.5 else _other(rng, places)
  return "not", vocab.say(rng, "not_in", a=actor, p=place), place


def _indefinite_statement(rng, vocab, actor, places, prev):
  if rng.random() < 0.5:
    place = _other(rng, places, prev[2] if prev and prev[0] == "in" else None)
    return "in", vocab.say(rng, "move", a=actor, p=place), place
  p, q = rng.sample(places, 2)
  return "either", vocab.say(rng, "either", a=actor, p=p, q=q), p, q


task9 = _knowledge_task(9, _negation_statement)
task9.__doc__ = "Simple negation: \"X is no longer in the P\" answers \"Is X in the P?\" with no."
task10 = _knowledge_task(10, _indefinite_statement)
task10.__doc__ = "Indefinite knowledge: \"X is either in P or Q\" makes \"Is X in P?\" maybe."


def _pronoun_move(rng, vocab, pronoun: str, place: str) -> str:
  adverb = rng.choice(vocab.templates["then"])
  sentence = vocab.say(rng, "move", a=pronoun, p=place)
  return f"{adverb[0].upper()}{adverb[1:]} {sentence[0].lower()}{sentence[1:]}"


def _where_task(task: int, pairs: bool, pronouns: bool):
  """Tasks 11-13: moves by one actor or a pair, optionally referred to by a pronoun next time.

  The original tells a named move and then a pronoun move (11, 13), or only pair moves (12); synthetic
  mode mixes them. The question asks about any actor whose place is known, as in the released files (not
  only the last subject, which would put the answer in the last line every time). A pronoun line's support
  is the line that named the actor too, since that is what resolves it.
  """

  def generate(rng: random.Random, vocab: Vocab) -> Story:
    actors, places = _cast(vocab, rng, task)
    world = World(rng, vocab, StoryBuilder(), actors, places)
    support: dict[str, tuple[int, ...]] = {}
    prev, prev_was_pronoun = None, False
    for _ in range(shape(vocab, rng, 5, 1, 8)):
      for _ in range(shape(vocab, rng, 2, 1, 4)):
        place = None
        if pronouns and prev and not prev_was_pronoun and (not vocab.varied_lengths or rng.random() < 0.5):
          subject = prev[0]
          place = _other(rng, places, world.actor_at[subject[0]].value)
          word = "they" if len(subject) == 2 else vocab.gender(subject[0])
          line = world.story.say(_pronoun_move(rng, vocab, word, place))
          sup, prev_was_pronoun = (prev[1], line), True
        else:
          pair = pairs and (task == 13 or not vocab.varied_lengths or rng.random() < 0.75)
          subject = tuple(rng.sample(actors, 2)) if pair else (rng.choice(actors),)
          here = {world.actor_at[a].value for a in subject if a in world.actor_at}
          place = _other(rng, places, *here)
          text = (vocab.say(rng, "pair_move", a=subject[0], b=subject[1], p=place) if len(subject) == 2
                  else vocab.say(rng, "move", a=subject[0], p=place))
          line = world.story.say(text)
          sup, prev_was_pronoun = (line,), False
        for actor in subject:
          world.set_location(actor, place, line)
          support[actor] = sup
        prev = (subject, line)
      actor = rng.choice(world.placed())
      world.story.ask(vocab.say(rng, "q_where", x=actor), world.actor_at[actor].value, support[actor])
    return world.story.story()

  return generate


task11 = _where_task(11, pairs=False, pronouns=True)
task12 = _where_task(12, pairs=True, pronouns=False)
task13 = _where_task(13, pairs=True, pronouns=True)


def _time_sentence(rng, vocab, actor, time, place) -> str:
  sentence = vocab.say(rng, "move", a=actor, p=place)
  if rng.random() < 0.5:
    return f"{time[0].upper()}{time[1:]} {sentence}"
  return f"{sentence[:-1]} {time}."


def task14(rng: random.Random, vocab: Vocab) -> Story:
  """Time reasoning: moves stamped with a time of day, told out of order; "Where was X before the P?"."""
  places_pool = ORIGINAL_PLACES[14] if vocab.mode == "original" else vocab.rooms + vocab.outdoor
  actors, places = _cast(vocab, rng, 14, places_pool)
  actors = actors[:shape(vocab, rng, 2, 1, 3)]
  events = []  # (actor, slot, place)
  for actor in actors:
    slots = shape(vocab, rng, 4, 2, 4)
    for slot, place in enumerate(rng.sample(places, slots)):
      events.append((actor, slot, place))
  rng.shuffle(events)
  story, told, asked = StoryBuilder(), {}, set()
  target = shape(vocab, rng, 5, 1, 6)
  for actor, slot, place in events:
    told[actor, slot] = (place, story.say(_time_sentence(rng, vocab, actor, TIMES[slot], place)))
    options = [(a, s) for (a, s) in told if s > 0 and (a, s - 1) in told and (a, s) not in asked]
    if options and story.num_questions < target and rng.random() < 0.6:
      a, s = rng.choice(options)
      asked.add((a, s))
      (before, l1), (at, l2) = told[a, s - 1], told[a, s]
      story.ask(vocab.say(rng, "q_before", x=a, p=at), before, (l1, l2))
  if story.num_questions == 0:
    return task14(rng, vocab)
  return story.story()
