"""README's commands run as written: every line of a fenced block marked `<!-- runnable -->` is run from the
repository's layout in a fresh directory — a training run with --dry_run (flags, config file, overrides,
values, mesh against the devices), a study with --status (grid, overrides, prerequisites), a tool, a Hugging
Face import and an evaluation for real, an export's arguments with --help. A workdir named by an earlier
training command of the same block is there as an empty directory (that command ran). A block marked
`<!-- needs: internet -->` is shown, not run (hub downloads)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARK = "<!-- runnable -->"
OFFLINE_EXEMPT = "<!-- needs: internet -->"


def runnable_blocks(text: str) -> list[list[str]]:
  """The command lines of each fenced block right after a MARK line."""
  blocks = []
  for m in re.finditer(re.escape(MARK) + r"\s*\n```[a-z]*\n(.*?)\n```", text, re.S):
    blocks.append([line for line in m.group(1).splitlines() if line.strip()])
  return blocks


def _argv(line: str) -> tuple[dict[str, str], list[str]]:
  """(environment assignments, argv) of one shell line; the `# …` comment dropped."""
  words = shlex.split(line, comments=True)
  env = {}
  while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
    k, v = words.pop(0).split("=", 1)
    env[k] = v
  return env, words


def _checked(argv: list[str]) -> list[str]:
  """The same command, made a check that does not train (this test knows how for each program)."""
  assert argv[0] == "python", argv
  if argv[1:3] == ["-m", "cpt_jax.train"]:
    return [sys.executable, *argv[1:], "--dry_run"]
  if argv[1:3] == ["-m", "cpt_jax.study"]:
    return [sys.executable, *argv[1:], "--status"]
  if argv[1].startswith("tools/") or argv[1:4] == ["-m", "cpt_jax.hf", "import"] or argv[1:3] == [
      "-m", "cpt_jax.evaluate"]:
    return [sys.executable, *argv[1:]]
  if argv[1:4] == ["-m", "cpt_jax.hf", "export"]:  # its run was only dry-run: check the arguments parse
    return [sys.executable, *argv[1:], "--help"]
  raise AssertionError(f"README marks {argv} runnable, and this test does not know how to check it")


def _workdir(argv: list[str]) -> str | None:
  for i, a in enumerate(argv):
    if a == "--workdir" and i + 1 < len(argv):
      return argv[i + 1]
    if a.startswith("--workdir="):
      return a.split("=", 1)[1]
  return None


def _run_block(lines: list[str], cwd: Path) -> list[tuple[str, subprocess.CompletedProcess]]:
  out = []
  for line in lines:
    env, argv = _argv(line)
    r = subprocess.run(_checked(argv), cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "CPT_JAX_DATA": str(cwd / "data"), **env})
    out.append((line, r))
    if _workdir(argv) and "cpt_jax.train" in line:  # what the next command may start from
      (cwd / _workdir(argv)).mkdir(parents=True, exist_ok=True)
  return out


def test_readme_commands_run_as_written(tmp_path):
  text = (REPO / "README.md").read_text()
  blocks = runnable_blocks(text)
  assert len(blocks) >= 4, "README has lost its runnable marks"
  exempt = re.findall(re.escape(OFFLINE_EXEMPT) + r"\s*\n```[a-z]*\n(.*?)\n```", text, re.S)
  for fence in re.findall(r"```bash\n(.*?)\n```", text, re.S):  # a cpt_jax command shown is a checked one
    if "python -m cpt_jax." in fence and fence not in exempt:
      assert any(fence.splitlines()[0] in b for b in blocks), f"unmarked command block:\n{fence}"
  dirs = []
  for i, _ in enumerate(blocks):
    d = tmp_path / f"block{i}"
    d.mkdir()
    for name in ("configs", "tools", "docs", "cpt_jax", "tests"):  # a fresh clone's layout, nothing run yet
      (d / name).symlink_to(REPO / name)
    dirs.append(d)
  with ThreadPoolExecutor(2) as pool:
    results = [r for rs in pool.map(_run_block, blocks, dirs) for r in rs]
  for line, r in results:
    assert r.returncode == 0 and "error:" not in r.stderr, (line, r.stdout[-2000:], r.stderr[-3000:])
    if "cpt_jax.train" in line:
      assert "dry run" in r.stdout and "the config is valid" in r.stdout, (line, r.stdout)
    if "cpt_jax.study" in line:
      assert r.stdout.startswith("study: "), (line, r.stdout)
