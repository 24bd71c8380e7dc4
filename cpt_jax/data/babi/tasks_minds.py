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
  for name in rng.sample(list(members), shape(vocab, rng, len(members), 1, len(members))):  # original: all
    animal = members[name]
    story.ask(f"What is {name} afraid of?", fears[animal][0], (said[name], said[animal]))
  return story.story()


def task16(rng: random.Random, vocab: Vocab) -> Story:
  """Basic induction: the asked actor's colour is that of the others of its species.

  As in the original generator: every actor is a random species, each species has its own colour, and
  only the asked actor's species is redrawn until another actor shares it, so that species is not
  over-represented (with a forced second member, "the most frequent colour" answered about two thirds of
  the questions). Every other actor's species and colour are said, each actor's species before its
  colour, actors interleaved at random; the question comes last.
  """
  species = rng.sample(vocab.species, shape(vocab, rng, 4, 3, min(6, len(vocab.species))))
  color = dict(zip(species, rng.sample(vocab.colors, len(species))))
  actors = actors_for(vocab, 16, rng, shape(vocab, rng, 5, 4, 8))
  kind = {a: rng.choice(species) for a in actors}
  target = rng.choice(actors)
  while sum(kind[a] == kind[target] for a in actors) < 2:
    kind[target] = rng.choice(species)
  todo = {a: ["is"] if a == target else ["is", "color"] for a in actors}
  story, said = StoryBuilder(), {}
  while any(todo.values()):
    a = rng.choice([a for a in actors if todo[a]])
    step = todo[a].pop(0)
    said[a, step] = story.say(f"{a} is a {kind[a]}." if step == "is" else f"{a} is {color[kind[a]]}.")
  peers = [a for a in actors if a != target and kind[a] == kind[target]]
  story.ask(f"What color is {target}?", color[kind[target]],
            [said[target, "is"]] + [said[a, step] for a in peers for step in ("is", "color")])
  return story.story()


def task20(rng: random.Random, vocab: Vocab) -> Story:
  """Agents' motivations: a feeling sends an agent to a place for an object. "Where will X go?" follows
  the feeling, "Why did X go to the P?" the move and "Why did X get the O?" the get. As in the original,
  the whole cast (four agents) goes through all three steps, agents take turns at random and each
  question comes right after its action; synthetic mode varies the cast and may ask later or not at all.
  """
  agents = actors_for(vocab, 20, rng, shape(vocab, rng, 4, 1, 5))
  plans = {a: rng.choice(vocab.motivations) for a in agents}
  steps = {a: ["feel", "where", "go", "why_go", "get", "why_get"] for a in agents}
  story, feel_line = StoryBuilder(), {}
  while any(steps.values()):
    agent = rng.choice([a for a in agents if steps[a]])
    for _ in range(1 if vocab.varied_lengths else 2):  # original: an action and its question
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
