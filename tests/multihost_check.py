"""Runs `python -m cpt_jax.train` as P local processes with D fake CPU devices each, joined by
jax.distributed on 127.0.0.1 (what tests/test_multihost.py does; also handy by hand):

  python tests/multihost_check.py --processes 2 --devices 4 -- --config tests/configs/multihost_tiny.py \
      --workdir /tmp/mh

Prints each process's exit code; exits with the first non-zero one (0 if all succeeded).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(train_args: list[str], processes: int, devices: int, env: dict[str, str] | None = None,
           timeout: float = 300) -> list[subprocess.CompletedProcess]:
  """Starts all processes, waits for all; returns their CompletedProcess (stdout/stderr captured)."""
  env = dict(os.environ if env is None else env, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
  cmd = [sys.executable, "-m", "cpt_jax.train", *train_args]
  if processes > 1:
    port = free_port()
    cmds = [cmd + [f"--coordinator=127.0.0.1:{port}", f"--num_processes={processes}", f"--process_id={i}"]
            for i in range(processes)]
  else:
    cmds = [cmd]
  procs = [subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for c in cmds]
  results = []
  try:
    for c, p in zip(cmds, procs):
      out, err = p.communicate(timeout=timeout)
      results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return results


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--devices", type=int, default=4, help="fake CPU devices per process")
  parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the arguments of cpt_jax.train")
  args = parser.parse_args()
  train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
  results = launch(train_args, args.processes, args.devices, timeout=3600)
  for i, r in enumerate(results):
    sys.stderr.write(f"--- process {i} (exit {r.returncode}) ---\n{r.stderr[-4000:]}")
  return next((r.returncode for r in results if r.returncode), 0)


if __name__ == "__main__":
  sys.exit(main())
