"""Transparent huge pages for host memory, asked for by the command-line entry points.

XLA:CPU takes each execution's temporaries (activations, the [tokens, vocab] logits) as fresh host memory,
which the kernel maps in 4 KiB pages on first touch: ~170,000 page faults per reference-shape train step, a
third of a second of kernel time in a 0.7 s step. Under glibc's `glibc.malloc.hugetlb=1` tunable malloc asks
for transparent huge pages (2 MiB): ~900 faults per step (measurements: docs/performance.md). glibc reads its
tunables only when a process starts, so `reexec_with_huge_pages` starts the command once more with the tunable
set, before it has done any work. Importing the library changes nothing; only the CLIs call it.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT_ENV = "CPT_JAX_HUGE_PAGES"  # "0": keep the allocator's defaults (no re-execution)
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
MIN_GLIBC = (2, 35)  # the first glibc with the hugetlb tunable


def _glibc_version() -> tuple[int, ...] | None:
  if sys.platform != "linux":
    return None
  name, version = platform.libc_ver()
  if name != "glibc" or not version:
    return None
  return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def _thp_possible(setting_path: str = THP_SETTING) -> bool:
  """False when the kernel has transparent huge pages off ("[never]") or lacks them."""
  try:
    with open(setting_path) as f:
      return "[never]" not in f.read()
  except OSError:
    return False


def _hugetlb_tunable(environ) -> str | None:
  """The value GLIBC_TUNABLES gives glibc.malloc.hugetlb, None where it gives none."""
  for item in environ.get("GLIBC_TUNABLES", "").split(":"):
    if item.startswith("glibc.malloc.hugetlb="):
      return item.split("=", 1)[1]
  return None


def obstacle(environ=os.environ, glibc=None, thp_possible=None) -> str | None:
  """Why the tunable cannot or need not be set; None where re-executing under it helps."""
  setting = _hugetlb_tunable(environ)
  if setting is not None:
    return "already set" if setting != "0" else "GLIBC_TUNABLES sets glibc.malloc.hugetlb=0"
  if environ.get(OPT_OUT_ENV) == "0":
    return f"{OPT_OUT_ENV}=0"
  if not sys.executable:
    return "no Python executable to start again (embedded interpreter)"
  glibc = _glibc_version() if glibc is None else glibc
  if not glibc or glibc < MIN_GLIBC:
    return f"not Linux with glibc >= {'.'.join(map(str, MIN_GLIBC))}"
  if not (_thp_possible() if thp_possible is None else thp_possible):
    return f"transparent huge pages are off in the kernel ({THP_SETTING})"
  return None


def reexec_with_huge_pages() -> None:
  """Replaces this process (same pid, arguments and working directory) with one that has the tunable set.

  Returns without doing anything where there is an `obstacle`, including in the re-executed process itself.
  """
  if obstacle() is not None:
    return
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  env = {**os.environ, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}" if tunables else TUNABLE}
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def describe() -> str:
  """One line for a run's log: which pages the allocator asks for, and how to change it."""
  why = obstacle()
  if why == "already set":
    return f"host memory: transparent huge pages (GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']})"
  if why is None:  # they would work here: the process was not started through a cpt_jax command
    return f"host memory: 4 KiB pages (to use huge pages, start Python with GLIBC_TUNABLES={TUNABLE})"
  return f"host memory: 4 KiB pages ({why})"
