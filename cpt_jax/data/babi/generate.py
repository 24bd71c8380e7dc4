"""The task registry and the seeded entry point: `generate_stories(task, mode, num_stories, seed)`."""

from __future__ import annotations

import random

from cpt_jax.data.babi import tasks_house, tasks_minds, tasks_people, tasks_space
from cpt_jax.data.babi.fileformat import TASK_NAMES, Story
from cpt_jax.data.babi.vocab import get_vocab

GENERATORS = {
    1: tasks_house.task1, 2: tasks_house.task2, 3: tasks_house.task3, 4: tasks_space.task4,
    5: tasks_house.task5, 6: tasks_house.task6, 7: tasks_house.task7, 8: tasks_house.task8,
    9: tasks_people.task9, 10: tasks_people.task10, 11: tasks_people.task11, 12: tasks_people.task12,
    13: tasks_people.task13, 14: tasks_people.task14, 15: tasks_minds.task15, 16: tasks_minds.task16,
    17: tasks_space.task17, 18: tasks_space.task18, 19: tasks_space.task19, 20: tasks_minds.task20,
}
assert set(GENERATORS) == set(TASK_NAMES)

# Bumped whenever any task's stories change: datasets cached under an older version are rebuilt, not reused.
GENERATOR_VERSION = 2


def check_task(task: int) -> int:
  if not isinstance(task, int) or task not in GENERATORS:
    raise ValueError(f"bAbI task {task!r} does not exist: tasks are numbered 1 to 20")
  return task


def statements(story: Story) -> int:
  """How many lines of the story are not questions: a question's passage holds those before it."""
  return sum(not line.is_question for line in story)


def generate_stories(task: int, mode: str, num_stories: int, seed: int, max_statements: int = 0) -> list[Story]:
  """`num_stories` stories of one task. The same (task, mode, seed) always gives the same stories, and
  each task has its own random stream, so generating a subset of tasks does not change any of them.

  `max_statements` > 0 keeps only stories of at most that many statements (drawn from the same stream, the
  longer ones skipped), so that a small model's context holds every question's passage whole: the synthetic
  variant's stories run up to 4× the original's length."""
  check_task(task)
  vocab = get_vocab(mode)
  if num_stories < 0:
    raise ValueError(f"num_stories must be >= 0, got {num_stories}")
  if max_statements < 0:
    raise ValueError(f"max_statements must be >= 0 (0: no limit), got {max_statements}")
  rng = random.Random(f"babi/{mode}/{task}/{seed}")
  out: list[Story] = []
  skipped = 0
  while len(out) < num_stories:
    story = GENERATORS[task](rng, vocab)
    if max_statements and statements(story) > max_statements:
      skipped += 1
      if skipped > 100 * (len(out) + 10):
        raise ValueError(f"bAbI {mode} task {task}: almost no story has at most {max_statements} statements; "
                         "raise the limit (data.*.babi_max_statements)")
      continue
    out.append(story)
  return out
