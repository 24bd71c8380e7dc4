"""The world simulator: actors move between places, pick up, drop and give objects, and every change is
written as one story line. State is kept together with the ids of the lines that established it, so
answers and supporting facts are read off the simulated world, never off the generated text.

Everything the world says is also everything the reader knows: an actor can only act where their
location has been stated, so each question asked has exactly one answer given the story so far.
"""

from __future__ import annotations

import dataclasses
import random

from cpt_jax.data.babi.fileformat import Line, Story
from cpt_jax.data.babi.vocab import Vocab


class StoryBuilder:
  """Appends numbered lines; `say` returns the new statement's id, `ask` records a question."""

  def __init__(self):
    self.lines: list[Line] = []

  def say(self, text: str) -> int:
    self.lines.append(Line(len(self.lines) + 1, text))
    return len(self.lines)

  def ask(self, text: str, answer: str, supports) -> None:
    self.lines.append(Line(len(self.lines) + 1, text, answer, tuple(sorted(set(supports)))))

  @property
  def num_questions(self) -> int:
    return sum(line.is_question for line in self.lines)

  def story(self) -> Story:
    return tuple(self.lines)


@dataclasses.dataclass(frozen=True)
class Fact:
  """A value and the line ids that state it."""

  value: str
  support: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Give:
  giver: str
  obj: str
  receiver: str
  line: int


class World:
  """Actors, places and movable objects; each action writes a line through `story` and updates state."""

  def __init__(self, rng: random.Random, vocab: Vocab, story: StoryBuilder, actors, places, objects=()):
    self.rng, self.vocab, self.story = rng, vocab, story
    self.actors, self.places, self.objects = list(actors), list(places), list(objects)
    self.actor_at: dict[str, Fact] = {}          # actor -> place, [line of the move]
    self.holder: dict[str, Fact] = {}            # object -> actor, [line that gave it to them]
    self.floor: dict[str, Fact] = {}             # object lying at a place -> place, [drop, holder's move]
    self.obj_history: dict[str, list[Fact]] = {}  # object -> places it has been at, in order
    self.carried: dict[str, list[str]] = {a: [] for a in self.actors}  # in order of pickup
    self.last_loss: dict[str, int] = {}          # actor -> line where they last dropped / gave something
    self.gives: list[Give] = []

  # --- actions -----------------------------------------------------------------------------------
  def move(self, actor: str, place: str | None = None, text: str | None = None) -> int:
    """Moves `actor` (to a random other place unless given); `text` overrides the sentence."""
    if place is None:
      here = self.actor_at.get(actor)
      place = self.rng.choice([p for p in self.places if here is None or p != here.value])
    line = self.story.say(text or self.vocab.say(self.rng, "move", a=actor, p=place))
    self.set_location(actor, place, line)
    return line

  def set_location(self, actor: str, place: str, line: int) -> None:
    self.actor_at[actor] = Fact(place, (line,))
    for obj in self.carried[actor]:
      self._record_place(obj, Fact(place, (self.holder[obj].support[0], line)))

  def get(self, actor: str, obj: str) -> int:
    line = self.story.say(self.vocab.say(self.rng, "get", a=actor, o=obj))
    self.holder[obj] = Fact(actor, (line,))
    self.floor.pop(obj, None)
    self.carried[actor].append(obj)
    self._record_place(obj, Fact(self.actor_at[actor].value, (line,) + self.actor_at[actor].support))
    return line

  def drop(self, actor: str, obj: str) -> int:
    line = self.story.say(self.vocab.say(self.rng, "drop", a=actor, o=obj))
    self._release(actor, obj, line)
    self.floor[obj] = Fact(self.actor_at[actor].value, (line,) + self.actor_at[actor].support)
    return line

  def give(self, actor: str, obj: str, receiver: str) -> int:
    line = self.story.say(self.vocab.say(self.rng, "give", a=actor, o=obj, b=receiver))
    self._release(actor, obj, line)
    self.holder[obj] = Fact(receiver, (line,))
    self.carried[receiver].append(obj)
    self.gives.append(Give(actor, obj, receiver, line))
    return line

  def _release(self, actor: str, obj: str, line: int) -> None:
    self.carried[actor].remove(obj)
    del self.holder[obj]
    self.last_loss[actor] = line

  def _record_place(self, obj: str, fact: Fact) -> None:
    """Appends a new place; at the same place, refreshes the supports to the latest lines."""
    history = self.obj_history.setdefault(obj, [])
    if history and history[-1].value == fact.value:
      history.pop()
    history.append(fact)

  # --- what can happen next ------------------------------------------------------------------------
  def placed(self) -> list[str]:
    return [a for a in self.actors if a in self.actor_at]

  def gettable(self) -> list[tuple[str, str]]:
    """(actor, object) pairs where the actor stands where the object lies, or the object is unseen."""
    out = []
    for a in self.placed():
      for o in self.objects:
        if o in self.holder:
          continue
        if o not in self.floor or self.floor[o].value == self.actor_at[a].value:
          out.append((a, o))
    return out

  def droppable(self) -> list[tuple[str, str]]:
    return [(a, o) for a in self.placed() for o in self.carried[a]]

  def givable(self) -> list[tuple[str, str, str]]:
    return [(a, o, b) for a, o in self.droppable() for b in self.placed()
            if b != a and self.actor_at[b].value == self.actor_at[a].value]

  def random_action(self, weights=(4, 2, 1, 0), allow=None) -> int:
    """One move / get / drop / give, drawn by `weights` among those possible; returns its line id.
    `allow(kind, args)` may veto gets, drops and gives: task 5's filler lines leave the asked give alone."""
    options = [(w, kind) for w, kind in zip(weights, ("move", "get", "drop", "give")) if w]
    while True:
      kind = self.rng.choices([k for _, k in options], [w for w, _ in options])[0]
      if kind == "move" or len(self.placed()) < 1:
        return self.move(self.rng.choice(self.actors))
      choices = {"get": self.gettable, "drop": self.droppable, "give": self.givable}[kind]()
      if allow is not None:
        choices = [args for args in choices if allow(kind, args)]
      if choices:
        return getattr(self, kind)(*self.rng.choice(choices))

  # --- questions about the state ---------------------------------------------------------------
  def where_object(self, obj: str) -> Fact | None:
    if obj in self.holder:
      actor = self.holder[obj].value
      return Fact(self.actor_at[actor].value, self.holder[obj].support + self.actor_at[actor].support)
    return self.floor.get(obj)
