"""Self-generated replay: `python tools/generate_replay.py --workdir RUN --out DIR --tokens N [--seed S]`.

Samples from RUN's checkpoint (BOS prompt, temperature 1, full context) into DIR/self_replay/1.0.0, a
dataset that `replay.kind=self replay.samples=...` reads. Deterministic by seed; rerun to resume.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cpt_jax.host_memory import reexec_with_huge_pages  # noqa: E402
from cpt_jax.replay_dataset import main  # noqa: E402

if __name__ == "__main__":
  reexec_with_huge_pages()
  main()
