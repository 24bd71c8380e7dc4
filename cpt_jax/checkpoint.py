"""Checkpoints: train state and every process's data-iterator state, saved together, atomically.

Orbax writes each step to a temporary directory and renames it on commit, so a `kill -9` leaves the
last committed step readable. A save that fails (a full disk, storage that kept failing), in the call or
later in Orbax's background thread, is a `paths.StorageError` naming the last committed step. Restore tries
the newest step first and falls back to older ones with a warning naming what was skipped; the restored
tree is checked against the model before it is used.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
from typing import Any, Iterable

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from cpt_jax import param_layout, paths

_STATE_BYTES = 1 << 14
_TRASH = "deleted"
_UNREADABLE = "unreadable"  # steps that failed to restore, moved here (kept) when an older one was used
_COMMIT_MARKER = "commit_success.txt"  # Orbax writes it last; a step dir without it never finished saving


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that does not fit the model; the message says what to do."""


class LayoutMismatch(CheckpointError):
  """The checkpoint holds the other layout of the blocks (model.scan_layers); build.restore_weights converts."""

  def __init__(self, message: str, step: int, saved_layout: str):
    super().__init__(message)
    self.step, self.saved_layout = step, saved_layout


def _encode_state(state: dict[str, Any]) -> np.ndarray:
  raw = json.dumps(state, sort_keys=True).encode()
  if len(raw) > _STATE_BYTES:
    raise CheckpointError(f"data state of {len(raw)} bytes exceeds {_STATE_BYTES}")
  return np.frombuffer(raw.ljust(_STATE_BYTES, b" "), np.uint8)


def gather_data_states(local_state: dict[str, Any]) -> dict[str, Any]:
  """{"process_<i>": state_i} for all processes, on every process (each one reads only its shard)."""
  if jax.process_count() == 1:
    return {"process_0": local_state}
  all_bytes = np.asarray(multihost_utils.process_allgather(_encode_state(local_state)))
  return {f"process_{i}": json.loads(bytes(row).decode()) for i, row in enumerate(all_bytes)}


class Checkpointer:

  def __init__(self, directory: str, keep: int, keep_steps: Iterable[int] = (), async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(directory) if "://" not in directory else directory
    if paths.path(self.directory).exists() and not paths.path(self.directory).is_dir():
      raise CheckpointError(f"{self.directory} is a file, not a checkpoint directory; move it away (nothing "
                            "else there is touched) or choose another --workdir")
    self.keep_steps = set(int(s) for s in keep_steps)
    policy = pp.AnyPreservationPolicy([pp.LatestN(keep), pp.CustomSteps(sorted(self.keep_steps))]) \
        if self.keep_steps else pp.LatestN(keep)
    # Old steps are first renamed into _TRASH (atomic on local disks), then removed: a kill -9 in the middle
    # of a deletion never leaves a half-deleted step directory that looks committed.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=not read_only, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only, read_only=read_only,
        todelete_subdir=None if read_only else _TRASH)
    self._read_only = read_only
    self._failed = False  # a save failed: close() does not report it a second time
    self._saving: int | None = None  # the step of the last save started (async: maybe not committed yet)
    self._empty_trash()
    handlers = {"params": ocp.StandardCheckpointHandler(), "opt": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict[str, Any], metadata: dict[str, Any] | None = None,
           force: bool = False) -> bool:
    """Starts an async save of `state` plus all processes' data states; returns whether it saved.

    Parameters and optimizer state are separate items, so an adapt run can load weights only.
    """
    args = {"params": ocp.args.StandardSave(state["params"]),
            "opt": ocp.args.StandardSave({k: v for k, v in state.items() if k != "params"}),
            "data": ocp.args.JsonSave(gather_data_states(data_state)),
            "meta": ocp.args.JsonSave(metadata or {})}
    try:
      if not self._manager.is_saving_in_progress():  # no deletion under way: the trash can go
        self._empty_trash()
      saved = self._manager.save(step, args=ocp.args.Composite(**args), force=force)  # waits for the previous one
    except Exception as e:  # pylint: disable=broad-except  # this or the previous async save failed
      raise self._save_failed(step, e) from e
    if saved:
      self._saving = step
    return saved

  def wait(self) -> None:
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # the async save failed
      raise self._save_failed(self._saving, e) from e

  def close(self) -> None:
    try:
      self.wait()
    except paths.StorageError:
      if not self._failed:
        raise
      logging.warning("%s: closed after a failed save", self.directory)  # reported already
    finally:
      self._manager.close()
    self._empty_trash()

  def _save_failed(self, step: int | None, e: Exception) -> paths.StorageError:
    """The error of a failed save: what failed, and which step a rerun resumes from."""
    if isinstance(e, paths.StorageError):
      return e
    self._failed = True
    committed = committed_steps(self.directory)
    if self._saving is not None and self._saving not in committed:  # the async save in flight is the one
      step = self._saving
    committed = [s for s in committed if step is None or s < step]
    last = f"step {committed[-1]}" if committed else "none yet: a rerun starts over"
    text = " ".join(str(e).split())
    # TensorStore reports the OS error at the end of a long message: "… File too large [os_error_code='27']"
    found = re.search(r"os_error_code='?(\d+)", text)
    code = e.errno if isinstance(e, OSError) and e.errno else int(found.group(1)) if found else errno.EIO
    reason = os.strerror(code) if (isinstance(e, OSError) and e.errno) or found else type(e).__name__
    return paths.StorageError(
        f"cannot write checkpoint step {step} to {self.directory}: {reason} ({type(e).__name__}: {text[:240]}). "
        f"The last committed checkpoint is {last}; free space (or fix the storage), then rerun the same command: "
        "it resumes from there", code)

  def _empty_trash(self) -> None:
    trash = os.path.join(self.directory, _TRASH)
    if not self._read_only and "://" not in trash and jax.process_index() == 0 and os.path.isdir(trash):
      shutil.rmtree(trash, ignore_errors=True)

  def restore(self, abstract_state: Any, step: int | None = None, weights_only: bool = False):
    """(step, state, data_states, meta) from `step`, or from the newest readable checkpoint.

    `weights_only`: `abstract_state` is the parameters alone and only they are read (adapt stage).

    A checkpoint that fails to read is skipped with a warning (never deleted); a tree that does not match
    `abstract_state` raises CheckpointError listing the differences, whatever step it came from.
    """
    steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    if not steps or steps == [None]:
      raise CheckpointError(f"no checkpoint in {self.directory}: that run has not saved one yet")
    errors, skipped = [], []
    for s in steps:
      try:
        if not (paths.path(self.directory) / str(s) / _COMMIT_MARKER).exists():
          raise FileNotFoundError(f"no commit marker {_COMMIT_MARKER}: the save of step {s} never finished")
        if weights_only:
          self._check_structure(s, "params", abstract_state)
          args = {"params": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        else:
          abstract_opt = {k: v for k, v in abstract_state.items() if k != "params"}
          self._check_structure(s, "params", abstract_state["params"])
          self._check_structure(s, "opt", abstract_opt)
          args = {"params": ocp.args.StandardRestore(abstract_state["params"]),
                  "opt": ocp.args.StandardRestore(abstract_opt),
                  "data": ocp.args.JsonRestore(), "meta": ocp.args.JsonRestore()}
        restored = self._manager.restore(s, args=ocp.args.Composite(**args))
        if errors:
          moved = self._quarantine(skipped) if step is None and not weights_only else ""
          logging.warning("restored step %d after skipping unreadable newer checkpoints: %s%s", s, "; ".join(errors),
                          moved)
        if weights_only:
          return s, restored["params"], None, restored["meta"]
        return s, {"params": restored["params"], **restored["opt"]}, restored["data"], restored["meta"]
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except  # any read failure means "try an older one"
        msg = f"step {s} ({type(e).__name__}: {str(e)[:200]})"
        logging.warning("step %d in %s is unreadable: %s; trying an older checkpoint", s, self.directory, msg)
        errors.append(msg)
        skipped.append(s)
    raise CheckpointError(f"no readable checkpoint in {self.directory}: " + "; ".join(errors) + ". Nothing was "
                          "changed there: restore it from a backup, or start over in a new --workdir (or, for "
                          "init_from, give another run).")

  def _quarantine(self, steps: list[int]) -> str:
    """Moves unreadable steps aside (never deletes them) so that the resumed run can save those steps again."""
    if self._read_only:
      return ""
    dest = os.path.join(self.directory, _UNREADABLE)
    if jax.process_index() == 0:
      paths.path(dest).mkdir(parents=True, exist_ok=True)
      for s in steps:  # on GCS a copy of every object, then a delete (paths.move_dir)
        paths.move_dir(os.path.join(self.directory, str(s)), os.path.join(dest, f"{s}.{int(time.time())}"))
    if jax.process_count() > 1:
          multihost_utils.sync_global_devices("cpt_jax_quarantine")
    self._manager.reload()
    return f". Kept them for inspection in {dest}/ (nothing was deleted)"

  def _check_structure(self, step: int, item: str, abstract_state: Any) -> None:
    """Compares saved shapes with the model's before loading, so a wrong model size is named, not half-loaded."""
    meta = self._manager.item_metadata(step)
    saved = meta[item] if meta is not None and item in meta else None
    if saved is None:
      raise FileNotFoundError(f"step {step} has no readable {item!r} metadata")
    saved_shapes = {_path_str(p): tuple(getattr(v, "shape", ()))
                    for p, v in jax.tree_util.tree_leaves_with_path(saved)}
    want_shapes = {_path_str(p): tuple(v.shape)
                   for p, v in jax.tree_util.tree_leaves_with_path(abstract_state)}
    diffs = [f"{k}: missing in checkpoint" for k in want_shapes.keys() - saved_shapes.keys()]
    diffs += [f"{k}: in checkpoint but not in model" for k in saved_shapes.keys() - want_shapes.keys()]
    diffs += [f"{k}: checkpoint {saved_shapes[k]} vs model {want_shapes[k]}"
              for k in want_shapes.keys() & saved_shapes.keys() if saved_shapes[k] != want_shapes[k]]
    saved_layout, want_layout = param_layout.layout_of(saved_shapes), param_layout.layout_of(want_shapes)
    if diffs and saved_layout and want_layout and saved_layout != want_layout:
      raise LayoutMismatch(
          f"checkpoint step {step} in {self.directory} holds the blocks in the {saved_layout} layout "
          f"(model.scan_layers={saved_layout == 'scan'}) but this run uses the {want_layout} layout: resume with "
          f"--config.model.scan_layers={saved_layout == 'scan'} (adapting from it, init_from, converts either way)",
          step, saved_layout)
    if diffs:
      raise CheckpointError(
          f"checkpoint step {step} in {self.directory} does not match the model "
          f"({len(diffs)} differences, e.g. {'; '.join(sorted(diffs)[:5])}). Is it from another model size, "
          "config or tokenizer (vocabulary)? Use the config and tokenizer it was saved with, or another --workdir.")


def committed_steps(directory: str) -> list[int]:
  """Steps whose save finished (commit marker present), listed without opening an Orbax manager."""
  d = paths.path(directory)
  if not d.is_dir():
    return []
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / _COMMIT_MARKER).exists())


def _path_str(path) -> str:
  """'blocks/0/attn/w_qkv': checkpoints store dict keys as strings (layer 0 comes back as '0')."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
