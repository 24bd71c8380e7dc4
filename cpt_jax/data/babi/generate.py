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


def generate_stories(task: int, mode: str, num_stories: int, seed: int) -> list[Story]:
  """`num_stories` stories of one task. The same (task, mode, seed) always gives the same stories, and
  each task has its own random stream, so generating a subset of tasks does not change any of them."""
  check_task(task)
  vocab = get_vocab(mode)
  if num_stories < 0:
    raise ValueError(f"num_stories must be >= 0, got {num_stories}")
  rng = random.Random(f"babi/{mode}/{task}/{seed}")
  return [GENERATORS[task](rng, vocab) for _ in range(num_stories)]
