"""Reports of studies: tables and figures made from a study's results.csv.

`quickstart(DIR)` writes DIR/quickstart.{md,png}. `study_report(DIR, OUT)` writes OUT/<study>.md with its
figures under OUT/<study>/ and a copy of DIR/results.csv there, for the three seed studies (the study's
`report` field: babi, forgetting, ptpp). Each seed claim is checked by code (`Claim`): the verdict and
the numbers in its sentence are computed from the results, not written by hand.

Modules: `common` (results.csv, tables, `Claim`, `Study`, provenance), `quickstart`, and one per seed
study: `babi` (with `babi_grid`, its results as a grid, and `babi_scale`, what its scale can show),
`forgetting`, `ptpp`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from cpt_jax.research.report.babi import babi_report
from cpt_jax.research.report.babi_grid import babi_guideline, plateau_budget
from cpt_jax.research.report.common import PAPERS, Claim, Study, markdown_table, provenance, read_results
from cpt_jax.research.report.forgetting import forgetting_report
from cpt_jax.research.report.ptpp import ptpp_report
from cpt_jax.research.report.quickstart import REPORTS, quickstart

__all__ = ["Claim", "PAPERS", "REPORTS", "STUDY_REPORTS", "Study", "babi_guideline", "markdown_table", "plateau_budget",
           "quickstart", "read_results", "study_report"]


def study_report(root: str | Path, out: str | Path = "docs/results", name: str | None = None) -> Path:
  """Writes OUT/<name>.md (+ OUT/<name>/*.png, OUT/<name>/results.csv) for the study in ROOT; returns the .md."""
  root, out = Path(root), Path(out)
  config = json.loads((root / "study_config.json").read_text())
  kind = config.get("report", "")
  if kind not in STUDY_REPORTS:
    raise ValueError(f"{root}: study report {kind!r} is not one of {sorted(STUDY_REPORTS)}")
  name = name or f"study_{kind}"
  rows = read_results(root / "results.csv")
  if not rows:
    raise ValueError(f"{root}/results.csv has no finished cells")
  fig_dir = out / name
  if fig_dir.exists():
    for old in fig_dir.glob("*.png"):
      old.unlink()
  fig_dir.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(root / "results.csv", fig_dir / "results.csv")
  st = Study(root, name, rows, config, fig_dir)
  title, body, claims = STUDY_REPORTS[kind](st)
  n_yes = sum(c.reproduced is True for c in claims)
  text = "\n".join([
      f"# {title}", "",
      f"Made by `python tools/report.py {root}` from `{root}/results.csv` (copied to `{name}/results.csv`). "
      "Every number and verdict below is computed from that file by `cpt_jax/research/report/`.", "",
      provenance(root, config, rows),
      "## Seed claims", "",
      f"Claims of {PAPERS[kind]}: {n_yes} of {len(claims)} reproduced at this scale.", "",
      "| seed claim | our runs | reproduced? |", "|---|---|---|",
      *[c.row() for c in claims], "",
      body])
  path = out / f"{name}.md"
  path.write_text(text)
  return path


STUDY_REPORTS: dict[str, Callable[[Study], tuple[str, str, list[Claim]]]] = {
    "babi": babi_report, "forgetting": forgetting_report, "ptpp": ptpp_report}
