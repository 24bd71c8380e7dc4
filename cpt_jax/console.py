"""What a person sees in the terminal, the same for every command line: the project's own log lines,
warnings and errors (the libraries' INFO lines go only to the log file), drawn above the progress bars so
that none is split, one `error:` line and exit code 2 for mistakes a person can fix, and a run's result as a
short table. Light on purpose (no JAX): the entry points import it before parsing their flags.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from typing import Any, NoReturn

from absl import flags, logging as absl_logging
from tqdm import tqdm

EXIT_USER_ERROR = 2
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FILE_FORMAT = "%(asctime)s %(levelname).1s %(name)s %(filename)s:%(lineno)d] %(message)s"


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def is_ours(record: logging.LogRecord) -> bool:
  """A record logged by a module of this package. By its file, resolved against the installed package, not
  by a substring of the path: a virtualenv inside a clone named cpt_jax/ holds every library's files."""
  return record.name.startswith("cpt_jax") or os.path.abspath(record.pathname).startswith(PACKAGE_DIR)


class _Console(logging.Handler):
  """Log lines on stderr through tqdm.write: the bars are cleared, the line printed, the bars redrawn."""

  def __init__(self, verbose: bool):
    super().__init__(logging.DEBUG)
    self._verbose = verbose
    self._full = logging.Formatter(_FILE_FORMAT)

  def filter(self, record):
    return self._verbose or record.levelno >= logging.WARNING or is_ours(record)

  def format(self, record):
    if self._verbose:
      return self._full.format(record)
    text = record.getMessage()
    if record.exc_info:
      text += "\n" + self._full.formatException(record.exc_info)
    if record.levelno >= logging.ERROR:
      return f"ERROR: {text}"
    return f"warning: {text}" if record.levelno >= logging.WARNING else text

  def emit(self, record):
    try:
      tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # pylint: disable=broad-except  # logging must never take a run down
      self.handleError(record)


class _RunLog(logging.Handler):
  """Every record (the libraries' INFO lines too) appended to DIR/NAME. Lines are held until DIR exists: the
  run's own checks create it, so a wrong --workdir is never created, or written into, by the log."""

  def __init__(self, directory: str, name: str):
    super().__init__(logging.DEBUG)
    self.setFormatter(logging.Formatter(_FILE_FORMAT))
    self._dir, self._name, self._file, self._held = directory, name, None, []

  @property
  def path(self) -> str:
    return os.path.join(self._dir, self._name)

  def emit(self, record):
    try:
      line = self.format(record) + "\n"
      if self._file is None:
        if not os.path.isdir(self._dir):
          if len(self._held) < 10_000:
            self._held.append(line)
          return
        self._file = open(self.path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        self._file.write("".join(self._held))
        self._held = []
      self._file.write(line)
      self._file.flush()
    except OSError:  # a full or vanished disk: the run reports it itself; the log stops
      self._file = None
      self._dir = os.devnull
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)

  def close(self):
    if self._file is not None:
      self._file.close()
      self._file = None
    super().close()


def setup_logging(log_dir: str | None, log_name: str, verbose: bool = False) -> _RunLog | None:
  """Console: this package's INFO lines, everyone's warnings and errors (all with `verbose`). File: everything,
  in LOG_DIR/LOG_NAME (none for a gs:// directory). Python warnings are logged too."""
  root = logging.getLogger()
  for handler in list(root.handlers):  # absl's, ours from an earlier call, a library's basicConfig (Grain's)
    if handler is absl_logging.get_absl_handler() or isinstance(handler, (_Console, _RunLog)) or (
        type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout)):
      root.removeHandler(handler)
  root.setLevel(logging.INFO)
  root.addHandler(_Console(verbose))
  logging.captureWarnings(True)
  run_log = None
  if log_dir and "://" not in log_dir:
    run_log = _RunLog(os.path.abspath(log_dir), log_name)
    root.addHandler(run_log)
  return run_log


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for an entry point with a --config file flag: a missing file, an unknown field or a
  bad value is one `error:` line (exit 2) instead of a traceback."""
  overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
  for i, arg in enumerate(argv[1:], 1):
    path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
        argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None)
    if path is not None and not os.path.exists(path.split(":")[0]):
      fail(f"config file {path} does not exist (ls configs/ lists the shipped ones)")
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:  # absl's --help / --helpfull print the usage, then exit 1; asking for help succeeded
    if e.code == 1 and any(a.split("=")[0] in ("--help", "-?", "--helpfull", "--helpshort") for a in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    text = str(e).strip()
    if "Traceback (most recent call last)" in text:  # the config file raised: its message, not the traceback
      text = f"{text.splitlines()[0].rstrip(': ')}: {text.splitlines()[-1]}"
    fail(text)
  except (AttributeError, KeyError) as e:
    names = re.findall(r"[a-zA-Z_][a-zA-Z_0-9]*", str(e).split("Did you mean")[0])
    hint = re.search(r'Did you mean "([^"]+)"', str(e))
    fail(f"unknown config field {names[0] if names else str(e)!r} in {overrides or 'the config file'}"
         f"{f'; did you mean {hint.group(1)!r}?' if hint else ''} (fields: cpt_jax/config.py)")
  except (TypeError, ValueError, SyntaxError, ImportError) as e:
    fail(f"bad config: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
         f"(in {overrides or 'the config file'})")


class ArgumentParser(argparse.ArgumentParser):
  """argparse with the house error style: one `error:` line and exit 2, the usage only with --help."""

  def error(self, message: str) -> NoReturn:
    fail(f"{message} (see {self.prog} --help)")


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
  """The 95 % Wilson score interval of an accuracy measured on n examples (sensible at 0 and 1, small n)."""
  if not n:
    return 0.0, 1.0
  centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(0.0, centre - half), min(1.0, centre + half)


def where(path: str | os.PathLike) -> str:
  """A path as a person can find it again from any directory: absolute, unless a URL (gs://…)."""
  return str(path) if "://" in str(path) else os.path.abspath(path)


def duration(seconds: float) -> str:
  seconds = round(seconds)
  if seconds < 60:
    return f"{seconds} s"
  if seconds < 3600:
    return f"{seconds // 60} min {seconds % 60:02d} s"
  return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def summary_table(summary: dict[str, Any], workdir: str) -> str:
  """The result of one run in a few lines: losses (and before adapting), forgetting, bAbI accuracy against
  its baselines, tokens, wall time, where everything is."""
  final, before = summary.get("final") or {}, summary.get("before") or {}
  rows = []
  for name in ("target", "base"):
    loss = final.get(f"eval/{name}/loss")
    if loss is None:
      continue
    extra = []
    if before.get(f"eval/{name}/loss") is not None:
      extra.append(f"before {before[f'eval/{name}/loss']:.3f}")
    if final.get(f"eval/{name}/unigram_entropy") is not None:
      extra.append(f"unigram entropy {final[f'eval/{name}/unigram_entropy']:.3f}")
    rows.append((f"{name} loss", f"{loss:.3f}" + (f"  ({', '.join(extra)})" if extra else "")))
  if final.get("eval/base/forgetting") is not None:
    rows.append(("forgetting", f"{final['eval/base/forgetting']:+.4f} nats (base loss after − before)"))
  acc = final.get("eval/babi/accuracy")
  if acc is not None:
    n = int(final.get("eval/babi/examples") or 0)
    text = f"{acc:.3f}"
    if n:
      lo, hi = wilson_interval(acc, n)
      text += f"  (95 % interval {lo:.3f}–{hi:.3f}, {n} examples"
      text += f"; majority answer {final['eval/babi/majority_baseline']:.3f}" \
          if final.get("eval/babi/majority_baseline") is not None else ""
      text += f"; before {before['eval/babi/accuracy']:.3f}" if before.get("eval/babi/accuracy") is not None else ""
      text += ")"
    rows.append(("bAbI accuracy", text))
  if not final:
    rows.append(("evaluation", "none in this invocation (the run was already finished); see metrics.jsonl"))
  tokens, scored = summary.get("tokens", 0), summary.get("scored_tokens")
  scored_text = f"; {scored:,} scored, the rest padding or prompts" if scored is not None and scored != tokens else ""
  rows.append(("tokens", f"{tokens:,} ({summary.get('steps', 0)} steps{scored_text})"))
  rows.append(("wall time", duration(summary.get("wall_seconds", 0.0))))
  rows.append(("workdir", where(workdir)))
  width = max(len(k) for k, _ in rows)
  title = f"{summary.get('stage', 'run')} finished"
  return "\n".join([title] + [f"  {k:{width}s}  {v}" for k, v in rows])
