"""The bAbI v1.2 text format: parse it and write it, so official files (e.g. en-10k) and ours are the same.

A line is `<id> <text>`; ids restart at 1 with each story. A question line is
`<id> <question>\\t<answer>\\t<supporting ids>`. `parse(format(x)) == x` and, for well-formed files,
`format(parse(text)) == text`: the question text is kept verbatim, trailing space included.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Sequence

TASK_NAMES = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge", 11: "basic-coreference",
    12: "conjunction", 13: "compound-coreference", 14: "time-reasoning", 15: "basic-deduction",
    16: "basic-induction", 17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}


@dataclasses.dataclass(frozen=True)
class Line:
  """One numbered line; `answer` is None for a statement."""

  id: int
  text: str
  answer: str | None = None
  supports: tuple[int, ...] = ()

  @property
  def is_question(self) -> bool:
    return self.answer is not None


Story = tuple[Line, ...]


class FormatError(ValueError):
  """A bAbI file line that does not follow the format; the message names the line."""


def task_filename(task: int, split: str = "train") -> str:
  return f"qa{task}_{TASK_NAMES[task]}_{split}.txt"


def task_of_filename(path: str | os.PathLike) -> int | None:
  match = re.match(r"qa(\d+)_", os.path.basename(os.fspath(path)))
  return int(match.group(1)) if match else None


def format_line(line: Line) -> str:
  if not line.is_question:
    return f"{line.id} {line.text}"
  return f"{line.id} {line.text}\t{line.answer}\t{' '.join(map(str, line.supports))}"


def format_stories(stories: Iterable[Sequence[Line]]) -> str:
  return "".join(format_line(line) + "\n" for story in stories for line in story)


def _parse_line(raw: str, where: str) -> Line:
  head, sep, rest = raw.partition(" ")
  if not sep or not head.isdigit():
    raise FormatError(f"{where}: expected '<id> <text>', got {raw!r}")
  if "\t" not in rest:
    return Line(int(head), rest)
  parts = rest.split("\t")
  if len(parts) != 3:
    raise FormatError(f"{where}: a question line needs question<TAB>answer<TAB>supports, got {raw!r}")
  text, answer, sup = parts
  try:
    supports = tuple(int(s) for s in sup.split())
  except ValueError:
    raise FormatError(f"{where}: supporting-fact ids must be integers, got {sup!r}") from None
  return Line(int(head), text, answer, supports)


def parse_stories(text: str, source: str = "<text>") -> list[Story]:
  """Stories of a bAbI file's text; a line with id 1 starts a new story."""
  stories: list[list[Line]] = []
  for n, raw in enumerate(text.splitlines(), 1):
    if not raw.strip():
      continue
    line = _parse_line(raw, f"{source}:{n}")
    if line.id == 1:
      stories.append([])
    elif not stories or line.id != stories[-1][-1].id + 1:
      raise FormatError(f"{source}:{n}: line id {line.id} does not follow the previous line")
    stories[-1].append(line)
  return [tuple(s) for s in stories]


def read_file(path: str | os.PathLike) -> list[Story]:
  with open(path, encoding="utf-8") as f:
    return parse_stories(f.read(), os.fspath(path))


def write_file(path: str | os.PathLike, stories: Iterable[Sequence[Line]]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write(format_stories(stories))


def questions(story: Sequence[Line]):
  """Yields (statements before the question, question line) for each question of a story."""
  seen: list[Line] = []
  for line in story:
    if line.is_question:
      yield tuple(seen), line
    else:
      seen.append(line)
