"""The two layouts of a GPT's parameter tree, and conversion between them.

Loop layout: one subtree per block under `blocks/0`, `blocks/1`, …; scan layout (`model.scan_layers`): every
block leaf stacked along a leading axis under `layers/…`. Checkpoints, Hugging Face export and restoring a run
into the other layout go through these functions, so they need no model instance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOOP_KEY, SCAN_KEY = "blocks", "layers"  # the parameter tree's top-level name of each layout


def layout_of(paths) -> str | None:
  """"scan" or "loop": the layout of a parameter tree (or of "a/b/c" path strings), None if neither shows."""
  parts = {p for path in paths for p in str(path).split("/")}
  return "scan" if SCAN_KEY in parts else "loop" if LOOP_KEY in parts else None


def convert_layout(params: dict, scan_layers: bool, stack=None, take=None) -> dict:
  """The same parameters in the other layout: loop `blocks/i/…` leaves stacked into `layers/…`, or a stacked
  tree split per layer; a tree already in the asked layout comes back as is.

  `stack(leaves) -> leaf` and `take(leaf, i) -> leaf` default to jnp.stack and indexing; others convert trees
  of abstract shapes or shardings.
  """
  stack = stack or (lambda xs: jnp.stack(xs))
  take = take or (lambda x, i: x[i])
  params = dict(params)
  if scan_layers and LOOP_KEY in params:
    blocks = params.pop(LOOP_KEY)
    per_layer = [blocks[i] if i in blocks else blocks[str(i)] for i in range(len(blocks))]
    params[SCAN_KEY] = jax.tree.map(lambda *xs: stack(xs), *per_layer)
  elif not scan_layers and SCAN_KEY in params:
    stacked = params.pop(SCAN_KEY)
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    params[LOOP_KEY] = {i: jax.tree.map(lambda x, i=i: take(x, i), stacked) for i in range(num_layers)}
  return params
