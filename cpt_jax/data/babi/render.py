"""bAbI as LM text: one (prompt, completion) pair per question.

The prompt is the story so far, the question and `ANSWER_DELIMITER`; the completion is the answer with
a leading space. The training pipeline tokenizes the two separately and concatenates them, so an
answer-only loss mask is "loss on the completion's tokens only". The layout follows lm-eval's `babi`
task ("Passage: ...Question: ...\\nAnswer:"), so scores line up with the harness.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from cpt_jax.data.babi.fileformat import Line, questions

ANSWER_DELIMITER = "\nAnswer:"


def render_example(story_lines: Sequence[str | Line], question: str | Line, answer: str | None = None
                   ) -> tuple[str, str]:
  """(prompt, completion) for a question; `story_lines` are the statements before it (text or `Line`)."""
  texts = [line.text if isinstance(line, Line) else line for line in story_lines]
  if isinstance(question, Line):
    question, answer = question.text, question.answer if answer is None else answer
  if answer is None:
    raise ValueError("render_example needs an answer (or a question Line that carries one)")
  passage = "".join(t.strip() + "\n" for t in texts)
  return f"Passage: {passage}Question: {question.strip()}{ANSWER_DELIMITER}", f" {answer.strip()}"


def render_story(story: Sequence[Line]) -> Iterator[tuple[str, str]]:
  """One (prompt, completion) per question, each prompt holding the statements before that question."""
  for statements, question in questions(story):
    yield render_example(statements, question)
