"""Report of a finished study: docs/results/<study>.md with tables, PNG figures and seed-claim checks.

    python tools/report.py DIR [--out docs/results] [--name study_babi]

DIR is a study directory (`python -m cpt_jax.study --workdir DIR`). The report kind comes from the study's
`report` field (babi, forgetting, ptpp; quickstart writes DIR/quickstart.md instead). Figures go to
OUT/<name>/*.png with a copy of DIR/results.csv; see cpt_jax/research/report/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpt_jax.research import report  # noqa: E402


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("dir", type=Path)
  ap.add_argument("--out", type=Path, default=Path("docs/results"))
  ap.add_argument("--name", default=None, help="report name (default: study_<kind>)")
  args = ap.parse_args(argv)
  try:
    kind = json.loads((args.dir / "study_config.json").read_text()).get("report", "")
    if kind in report.REPORTS:
      print(report.REPORTS[kind](args.dir))
      return 0
    path = report.study_report(args.dir, args.out, args.name)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(path.read_text())
  print(f"wrote {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
