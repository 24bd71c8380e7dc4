"""Tasks 15, 16, 20: deduction from rules, induction from examples, and agents' motivations.

Each story first draws its hidden facts (who is what animal, which animal fears which, each species'
colour, each agent's feeling); answers are read from those facts.
"""

from __future__ import annotations

import random

from cpt_jax.data.babi.fileformat import Story
from cpt_jax.data.babi.tasks_house import shape
from cpt_jax.data.babi.vocab import Vocab, actors_for
from cpt_jax.data.babi.world import StoryBuilder


def task15(rng: random.Random, vocab: Vocab) -> Story:
  """Basic deduction: "Mice are afraid of wolves. Gertrude is a mouse." -> Gertrude fears wolf."""
  animals = rng.sample(vocab.animals, min(len(vocab.animals), shape(vocab, rng, 4, 3, 6)))
  fears = {a: rng.choice([b for b in animals if b != a]) for a in animals}
  members = {name: rng.choice(animals) for name in actors_for(vocab, 15, rng, shape(vocab, rng, 4, 3, 6))}
  lines = [("rule", a) for a in animals] + [("member", n) for n in members]
  rng.shuffle(lines)
  story, said = StoryBuilder(), {}
  for kind, key in lines:
    if kind == "rule":
      said[key] = story.say(f"{key[1].capitalize()} are afraid of {fears[key][1]}.")
    else:
      said[key] = story.say(f"{key} is a {members[key][0]}.")
  for name in rng.sample(list(members), shape(vocab, rng, min(3, len(members)), 1, len(members))):
    animal = members[name]
    story.ask(f"What is {name} afraid of?", fears[animal][0], (said[name], said[animal]))
  return story.story()


def task16(rng: random.Random, vocab: Vocab) -> Story:
  """Basic induction: the asked actor's colour is the one shared by the others of its species."""
  species = rng.sample(vocab.species, shape(vocab, rng, 4, 3, min(6, len(vocab.species))))
  color = {s: rng.choice(vocab.colors) for s in species}
  actors = actors_for(vocab, 16, rng, shape(vocab, rng, 5, 4, 8))
  target, example = actors[0], actors[1]
  kind = {target: rng.choice(species)}
  kind[example] = kind[target]
  for a in actors[2:]:
    kind[a] = rng.choice(species)
  order = actors[1:]
  rng.shuffle(order)
  order.insert(rng.randrange(len(order) + 1), target)
  story, said = StoryBuilder(), {}
  for a in order:
    said[a, "is"] = story.say(f"{a} is a {kind[a]}.")
    if a != target:
      said[a, "color"] = story.say(f"{a} is {color[kind[a]]}.")
  story.ask(f"What color is {target}?", color[kind[target]],
            (said[target, "is"], said[example, "is"], said[example, "color"]))
  return story.story()


def task20(rng: random.Random, vocab: Vocab) -> Story:
  """Agents' motivations: a feeling sends an agent to a place for an object; ask where and why."""
  agents = actors_for(vocab, 20, rng, shape(vocab, rng, 2, 1, 4))
  plans = {a: rng.choice(vocab.motivations) for a in agents}
  steps = {a: ["feel", "where", "go", "why_go", "get", "why_get"] for a in agents}
  story, feel_line = StoryBuilder(), {}
  while any(steps.values()):
    agent = rng.choice([a for a in agents if steps[a]])
    step = steps[agent].pop(0)
    feeling, place, obj = plans[agent]
    if step == "feel":
      feel_line[agent] = story.say(f"{agent} is {feeling}.")
    elif step == "go":
      story.say(vocab.say(rng, "move", a=agent, p=place))
    elif step == "get":
      story.say(vocab.say(rng, "get", a=agent, o=obj))
    elif rng.random() < (1.0 if not vocab.varied_lengths else 0.6):
      question, answer = {"where": (f"Where will {agent} go?", place),
                          "why_go": (f"Why did {agent} go to the {place}?", feeling),
                          "why_get": (f"Why did {agent} get the {obj}?", feeling)}[step]
      story.ask(question, answer, (feel_line[agent],))
  if story.num_questions == 0:
    return task20(rng, vocab)
  return story.story()
