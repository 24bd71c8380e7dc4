"""A run's directory, checked before anything is compiled: writable, and holding only what a run of cpt_jax
leaves there, so that a wrong --workdir fails in one line instead of half-way through a run."""

from __future__ import annotations

import uuid

from cpt_jax import config as config_lib, paths
from cpt_jax.data.records import DataError
from cpt_jax.data.tokenizer import load_tokenizer, run_tokenizer_path


def check(workdir: str) -> None:
  """Creates the workdir and writes a probe, so a bad --workdir fails before any compilation; then checks
  what an earlier run left there, which would otherwise fail half-way through (or after a long compile).

  Each process writes its own probe: the processes of a multi-host run check one workdir at the same time, and a
  shared name let one process delete the probe another was about to delete."""
  probe = paths.path(workdir) / f".write_probe.{uuid.uuid4().hex}"
  try:
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except  # gcsfs raises HTTP errors as well as OSErrors
    if not paths.is_remote(workdir):
      if probe.parent.exists() and not probe.parent.is_dir():
        raise config_lib.ConfigError(f"workdir {workdir} is a file, not a directory; choose another --workdir") \
            from None
      if isinstance(e, OSError) and e.errno in paths.FULL_ERRNOS:
        raise  # disk full or over quota: train.py's storage exit code, not a wrong --workdir
      if isinstance(e, OSError) and probe.parent.is_dir():
        raise config_lib.ConfigError(f"workdir {workdir} is not writable ({e.strerror}); choose another "
                                     "--workdir or free space") from None
      raise  # train.py reports a local OSError as "cannot write …"
    reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise config_lib.ConfigError(f"workdir {workdir} is not writable ({reason}); check the bucket name and that "
                                 "this machine's service account may write to it") from None
  root = probe.parent
  for name, want_dir in (("checkpoints", True), ("metrics.jsonl", False), ("config.json", False),
                         ("tokenizer.model", False), ("tokenizer.json", False), ("before.json", False),
                         ("summary.json", False)):
    if (root / name).exists() and (root / name).is_dir() != want_dir:
      raise config_lib.ConfigError(f"{root / name} is a {'file' if want_dir else 'directory'}, where this run keeps "
                                   f"its {name}; move it away (nothing else is touched) or choose another --workdir")
  if (root / "metrics.jsonl").exists():
    try:
      (root / "metrics.jsonl").read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
      raise config_lib.ConfigError(
          f"{root / 'metrics.jsonl'} is not a metrics file (not UTF-8 text: byte {e.start}); move it aside and "
          "rerun: the run continues from its checkpoints with a new metrics.jsonl") from None
  if (root / "before.json").exists():
    try:
      before_ok = isinstance(paths.read_json(root / "before.json"), dict)
    except ValueError:
      before_ok = False
    if not before_ok:
      raise config_lib.ConfigError(
          f"{root / 'before.json'} is unreadable (not a JSON object). It holds the losses before adaptation that "
          "forgetting is measured against: restore it from a backup, or start over in a new --workdir")
  own_tokenizer = run_tokenizer_path(root)
  if own_tokenizer.exists():
    try:
      load_tokenizer(own_tokenizer)
    except DataError:
      raise config_lib.ConfigError(
          f"{own_tokenizer}, the tokenizer this run was trained with, is not a usable "
          f"{'SentencePiece model' if own_tokenizer.name.endswith('.model') else 'tokenizer.json'}: put back the one "
          "it started with (its data.tokenizer), or start over in a new --workdir") from None
