"""notebooks/colab_quickstart.ipynb runs top to bottom on CPU (tiny sizes, a local corpus, no install)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import synthetic_document

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "colab_quickstart.ipynb"


def test_notebook_runs_on_cpu(tmp_path, monkeypatch):
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  rng = random.Random(1)
  for split, n in (("train", 60), ("validation", 6)):
    for i in range(n):
      (corpus / f"{split}_{i:03d}.txt").write_text(synthetic_document(rng, 30))
  monkeypatch.setenv("CPT_JAX_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("CPT_JAX_NOTEBOOK_CORPUS", str(corpus / "{split}_*.txt"))
  monkeypatch.setenv("CPT_JAX_NOTEBOOK_WORKDIR", str(tmp_path / "runs"))
  monkeypatch.setenv("CPT_JAX_DATA", str(tmp_path / "data"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  t0 = time.perf_counter()
  NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
  print(f"notebook ran in {time.perf_counter() - t0:.1f} s")
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "install skipped" in text and "cpu:" in text and "forgetting" in text
  assert (tmp_path / "runs" / "forgetting.png").stat().st_size > 10_000
  assert (tmp_path / "runs" / "adapt_replay25" / "metrics.jsonl").exists()
