"""The docs name files and tests that exist: a renamed module or test must not leave a stale pointer behind."""

import importlib
import itertools
import re
from pathlib import Path

from cpt_jax.config import default_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# a repository path: one of the top-level folders, then path characters; {a,b} is shell brace expansion
PATH = re.compile(r"(?<![\w/.-])((?:cpt_jax|tools|configs|tests|docs|notebooks)/[\w./{},$*-]*[\w}/*])")
PLACEHOLDER = re.compile(r"[$*]|_X\b|_X\.")  # configs/study_X.py, study_$s.py, *.trace.json.gz: not one file
TEST_REF = re.compile(r"(test_\w+\.py)::(test_\w+\*?)")  # test_nan_* names every test with that prefix


def _expand(path: str) -> list[str]:
  """"tests/test_{laws,fit}.py" -> ["tests/test_laws.py", "tests/test_fit.py"]."""
  parts = re.split(r"\{([^}]*)\}", path)
  choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
  return ["".join(c) for c in itertools.product(*choices)]


def _references(pattern: re.Pattern) -> list[tuple[str, tuple[str, ...]]]:
  out = []
  for doc in DOCS:
    for match in pattern.finditer(doc.read_text(encoding="utf-8")):
      out.append((doc.relative_to(ROOT).as_posix(), match.groups()))
  return out


def test_every_repository_path_the_docs_name_exists():
  refs = _references(PATH)
  assert len(refs) > 50, refs  # the pattern still finds the docs' paths
  missing = sorted({f"{doc}: {p}" for doc, (path,) in refs if not PLACEHOLDER.search(path)
                    for p in _expand(path.rstrip(".")) if not (ROOT / p).exists()})
  assert not missing, "docs name paths that do not exist:\n" + "\n".join(missing)


def test_every_test_the_docs_cite_exists():
  refs = _references(TEST_REF)
  assert len(refs) > 10, refs
  missing = []
  for doc, (file, name) in refs:
    source = ROOT / "tests" / file
    defined = rf"^def {name[:-1]}\w*\(" if name.endswith("*") else rf"^def {name}\("
    if not source.exists() or not re.search(defined, source.read_text(encoding="utf-8"), re.M):
      missing.append(f"{doc}: {file}::{name}")
  assert not missing, "docs cite tests that do not exist:\n" + "\n".join(sorted(set(missing)))


# `module.name` in the docs, where module is a cpt_jax module's own name. A name shared with a config section
# (`model.remat`) may be either a config field or the module's attribute (`model.flops_per_token`); study configs'
# own keys (`study.midtrain`) and file names (`metrics.jsonl`) are not symbols.
SYMBOL = re.compile(r"`([a-z_]+)\.([A-Za-z_]\w*)[`(]")
NOT_MODULES = {"study", "claims", "config"}
FILE_SUFFIXES = {"json", "jsonl", "model", "safetensors", "py", "png", "csv", "txt", "sh", "toml", "md", "gz",
                 "ipynb", "pkl"}


def test_every_cpt_jax_symbol_the_docs_name_exists():
  modules: dict[str, list[str]] = {}
  for f in (ROOT / "cpt_jax").rglob("*.py"):
    if f.stem not in ("__init__", "__main__"):
      modules.setdefault(f.stem, []).append(".".join(f.relative_to(ROOT).with_suffix("").parts))
  fields = default_config()
  checked, missing = 0, []
  for doc, (mod, attr) in _references(SYMBOL):
    if mod in NOT_MODULES or attr in FILE_SUFFIXES or len(modules.get(mod, [])) != 1:
      continue
    checked += 1
    if mod in fields and attr in fields[mod]:
      continue
    if not hasattr(importlib.import_module(modules[mod][0]), attr):
      missing.append(f"{doc}: {mod}.{attr} ({modules[mod][0]} has no {attr})")
  assert checked > 20, checked
  assert not missing, "docs name symbols that do not exist:\n" + "\n".join(sorted(set(missing)))
