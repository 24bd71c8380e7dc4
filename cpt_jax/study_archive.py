"""Finished cells carried across checkouts, so that a study longer than one machine's life resumes where it stopped.

Run directories hold checkpoints and stay out of the repository. What the runner and the report need of a
finished adaptation cell is small: its config, summary.json and before.json. `tools/report.py` writes them for
every finished cell to OUT/<name>/cells.jsonl beside results.csv, with the runner's invocations.jsonl;
`python -m cpt_jax.study … --restore OUT/<name>` puts them back into a study directory, so the runner skips them
and the report counts them (and their wall time).

A cell is restored only where its config equals the one the grid gives it now (a changed design reruns its
cells), and never over a cell already in the directory. Pretraining and midtrain cells are not carried: the cells
still to run need their checkpoints, so they rerun. Whether the rerun base is the one the restored cells started
from is checked by the report (every cell of a stage must show the same `base_loss_before`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

ARCHIVE = "cells.jsonl"
INVOCATIONS = "invocations.jsonl"
FILES = ("cell_config.json", "before.json", "summary.json")  # summary.json last: it marks the cell done
_ROOT = "<study>"


def _swap(value: Any, old: str, new: str) -> Any:
  """`value` (JSON-able) with every occurrence of the string `old` inside its strings replaced by `new`."""
  return json.loads(json.dumps(value).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1]))


def _portable(value: Any, root: Path) -> Any:
  """`value` with the study directory's path written as <study>, so an archive restores into another one."""
  return _swap(value, str(root), _ROOT)


def _local(value: Any, root: Path) -> Any:
  return _swap(value, _ROOT, str(root))


def save(root: Path, dest: Path) -> int:
  """Writes DEST/cells.jsonl (one line per finished adaptation cell) and DEST/invocations.jsonl; returns the
  number of cells."""
  root, lines = Path(root), []
  for summary in sorted((root / "cells").glob("*/summary.json")):
    entry: dict[str, Any] = {"id": f"cells/{summary.parent.name}"}
    for name in FILES:
      if (summary.parent / name).is_file():
        entry[name] = _portable(json.loads((summary.parent / name).read_text()), root)
    lines.append(json.dumps(entry, sort_keys=True))
  dest.mkdir(parents=True, exist_ok=True)
  (dest / ARCHIVE).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
  if (root / INVOCATIONS).is_file():
    (dest / INVOCATIONS).write_text((root / INVOCATIONS).read_text(encoding="utf-8"), encoding="utf-8")
  return len(lines)


def restore(root: Path, cells: list, src: Path) -> list[str]:
  """Puts SRC's archived cells into the study directory where the grid has the same cell, unfinished and with
  the same config; merges SRC's invocations into the directory's. Returns the restored cell ids."""
  root, src = Path(root), Path(src)
  if not (src / ARCHIVE).is_file():
    raise ValueError(f"--restore {src}: there is no {src / ARCHIVE} (tools/report.py writes one beside the "
                     "report's results.csv)")
  by_id = {c.id: c for c in cells}
  restored, changed = [], []
  for line in (src / ARCHIVE).read_text(encoding="utf-8").splitlines():
    if not line.strip():
      continue
    entry = json.loads(line)
    cell = by_id.get(entry["id"])
    if cell is None or cell.kind != "adapt" or cell.done or "summary.json" not in entry:
      continue
    if entry.get("cell_config.json") != _portable(cell.config, root):
      changed.append(cell.id)
      continue
    cell.workdir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
      if name in entry:
        (cell.workdir / name).write_text(json.dumps(_local(entry[name], root), indent=2), encoding="utf-8")
    restored.append(cell.id)
  if changed:
    logging.warning("not restored, the grid now configures them differently (they rerun): %s", ", ".join(changed))
  _merge_invocations(root, src)
  return restored


def _merge_invocations(root: Path, src: Path) -> None:
  if not (src / INVOCATIONS).is_file():
    return
  path = root / INVOCATIONS
  mine = [x for x in (path.read_text(encoding="utf-8").splitlines() if path.is_file() else []) if x.strip()]
  seen = {json.loads(x).get("started") for x in mine}
  theirs = [x for x in (src / INVOCATIONS).read_text(encoding="utf-8").splitlines()
            if x.strip() and json.loads(x).get("started") not in seen]
  root.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(x + "\n" for x in theirs + mine), encoding="utf-8")
