"""Can a GPT of this size learn an in-context lookup, and does a copying phase first change that?

bAbI's "Where is Mary?" needs the model to find a name in its context and read what follows it. This tool
trains the project's GPT (`cpt_jax.model.GPT`, from scratch) on three synthetic token tasks and prints the
accuracy on a fixed held-out batch as training goes:

  copy     random spans of 10-20 tokens, then the same span again, then random filler; the loss is on the
           repeat (dense: every repeated token is a target). Its period varies per row, so only a head that
           matches content (an induction head, Olsson et al. 2022) solves it, not a fixed positional offset.
  recall   8 distinct keys each followed by its value, then a query key; the loss is on its value only.
  latest   8 sentences "name filler to place ." over 4 names and 6 places, then a query name; the answer is
           the place of that name's *last* sentence (bAbI task 1 in tokens); the loss is on the answer only.

`--copy_steps N` trains N steps of `copy` first, then adapts to the task with a fresh optimizer (peak
`--task_lr`), as a base is adapted; so a model that can copy and one that cannot can be compared:

    python tools/probe_lookup.py --task latest --steps 3000
    python tools/probe_lookup.py --task latest --steps 1500 --copy_steps 1500 --task_lr 2e-4

One JSON line per evaluation, then a summary line; docs/results/README.md has the measured curves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cpt_jax import model as model_lib  # noqa: E402  # pylint: disable=wrong-import-position

VOCAB, LENGTH = 64, 64
QUERY = 62  # the token that starts a question
NAMES, PLACES, FILLERS, TO, STOP = range(0, 4), range(10, 16), range(20, 30), 30, 31


def copy_rows(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
  """([B, L] tokens, [B, L] mask): mask[t] = 1 where token t+1 is a predictable repeated token."""
  x_BxL = rng.integers(0, 60, (batch, LENGTH))
  mask_BxL = np.zeros((batch, LENGTH), np.float32)
  for b in range(batch):
    n = int(rng.integers(10, 21))
    x_BxL[b, n:2 * n] = x_BxL[b, :n]
    mask_BxL[b, n:2 * n - 1] = 1.0  # predicting tokens n+1 … 2n-1 (token n, the repeat's first, is not)
  return x_BxL, mask_BxL


def recall_rows(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
  keys_Bx8 = np.stack([rng.choice(32, 8, replace=False) for _ in range(batch)])
  values_Bx8 = rng.integers(32, 62, (batch, 8))
  asked_B = rng.integers(0, 8, batch)
  rows = np.stack([keys_Bx8, values_Bx8], -1).reshape(batch, 16)
  pick = np.arange(batch)
  x_BxN = np.concatenate([rows, np.full((batch, 1), QUERY), keys_Bx8[pick, asked_B][:, None],
                          values_Bx8[pick, asked_B][:, None]], 1)
  return _answer_only(x_BxN)


def latest_rows(rng: np.random.Generator, batch: int, sentences: int = 8) -> tuple[np.ndarray, np.ndarray]:
  out = []
  for _ in range(batch):
    tokens, last_place = [], {}
    for _ in range(sentences):
      name, place = int(rng.choice(NAMES)), int(rng.choice(PLACES))
      tokens += [name, int(rng.choice(FILLERS)), TO, place, STOP]
      last_place[name] = place
    asked = int(rng.choice(sorted(last_place)))
    out.append(tokens + [QUERY, asked, last_place[asked]])
  return _answer_only(np.array(out))


def _answer_only(x_BxN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Rows whose last token is the answer: the mask marks the position that predicts it."""
  mask_BxN = np.zeros(x_BxN.shape, np.float32)
  mask_BxN[:, -2] = 1.0
  return x_BxN, mask_BxN


TASKS = {"copy": copy_rows, "recall": recall_rows, "latest": latest_rows}


def _loss_and_accuracy(model, x_BxL, mask_BxL):
  """Next-token loss and accuracy over the masked positions (mask[t]: token t+1 is a target)."""
  logits_BxLxV = model(x_BxL[:, :-1])
  targets_BxL, mask = x_BxL[:, 1:], mask_BxL[:, :-1]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
  right = logits_BxLxV.argmax(-1) == targets_BxL
  return (nll * mask).sum() / mask.sum(), (right * mask).sum() / mask.sum()


evaluate = nnx.jit(_loss_and_accuracy)


@nnx.jit
def train_step(model, opt, x_BxL, mask_BxL):
  (loss, accuracy), grads = nnx.value_and_grad(_loss_and_accuracy, has_aux=True)(model, x_BxL, mask_BxL)
  opt.update(model, grads)
  return loss, accuracy


def run(task: str, steps: int, copy_steps: int = 0, layers: int = 2, width: int = 128, heads: int = 4,
        batch: int = 64, lr: float = 2e-3, task_lr: float | None = None, every: int = 250, seed: int = 0,
        log=print) -> dict:
  """Trains `copy_steps` of copying, then `steps` of `task` (as adapting a base: a fresh optimizer and
  schedule, peak `task_lr`, default `lr`); returns the curves and the final accuracies.

  The optimizer is plain AdamW (warmup, cosine to a tenth, weight decay 0.1 on every parameter), as in the
  usual toy setups of these tasks, not `optim.make_optimizer`: the probe has no token budget or config to
  derive half-lives from, and its figures in docs/results/README.md were measured with this one."""
  task_lr = lr if task_lr is None else task_lr
  cfg = model_lib.ModelConfig(vocab_size=VOCAB, max_len=LENGTH, num_layers=layers, d_model=width,
                              num_heads=heads)
  model = model_lib.GPT(cfg, nnx.Rngs(seed))
  rng = np.random.default_rng(seed)
  held_out = {name: tuple(map(jnp.asarray, TASKS[name](np.random.default_rng(10_000 + seed), 512)))
              for name in {"copy", task}}
  curves: dict[str, list] = {"copy": [], task: []}
  start = time.time()
  for phase, phase_steps, peak in (("copy", copy_steps, lr), (task, steps, task_lr)):
    if not phase_steps:
      continue
    schedule = optax.warmup_cosine_decay_schedule(0.0, peak, min(50, max(phase_steps // 2, 1)),
                                                  max(phase_steps, 2), peak / 10)
    opt = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=0.1), wrt=nnx.Param)
    for i in range(phase_steps):
      train_step(model, opt, *map(jnp.asarray, TASKS[phase](rng, batch)))
      if (i + 1) % every == 0 or i + 1 == phase_steps:
        loss, accuracy = (float(v) for v in evaluate(model, *held_out[phase]))
        curves[phase].append({"step": i + 1, "loss": round(loss, 4), "accuracy": round(accuracy, 4)})
        log(json.dumps({"phase": phase, **curves[phase][-1], "seconds": round(time.time() - start, 1)}))
  final = {name: float(evaluate(model, *rows)[1]) for name, rows in held_out.items()}
  return {"task": task, "steps": steps, "copy_steps": copy_steps, "layers": layers, "width": width,
          "batch": batch, "lr": lr, "task_lr": task_lr, "seed": seed, "curves": curves,
          "final_accuracy": final, "seconds": round(time.time() - start, 1)}


def heuristics(task: str, rows: int = 4096, seed: int = 0) -> dict[str, float]:
  """Accuracies a model reaches without the lookup: chance, and for `latest` the place of the last sentence."""
  if task == "recall":
    return {"chance": 1 / 30}
  if task == "latest":
    x_BxN, _ = latest_rows(np.random.default_rng(seed), rows)
    return {"chance": 1 / len(PLACES), "last_place_named": float(np.mean(x_BxN[:, -5] == x_BxN[:, -1]))}
  return {}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--task", choices=["recall", "latest"], default="latest")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--copy_steps", type=int, default=0, help="steps of the copying task first")
  p.add_argument("--layers", type=int, default=2)
  p.add_argument("--width", type=int, default=128)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--lr", type=float, default=2e-3)
  p.add_argument("--task_lr", type=float, default=None,
                 help="peak learning rate of the task phase (default --lr); it starts a fresh optimizer")
  p.add_argument("--every", type=int, default=250, help="evaluate every N steps")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  result = run(a.task, a.steps, a.copy_steps, a.layers, a.width, batch=a.batch, lr=a.lr, task_lr=a.task_lr,
               every=a.every, seed=a.seed)
  result["without_lookup"] = heuristics(a.task)
  print(json.dumps({k: v for k, v in result.items() if k != "curves"}))
  return result


if __name__ == "__main__":
  main()
