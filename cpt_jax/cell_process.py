"""The study runner's cell processes: a SIGTERM/SIGINT to the runner is passed on to them, so that they
checkpoint and exit 75 instead of training on as orphans that hold their workdirs' leases."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading


class Stopped(Exception):
  """SIGTERM/SIGINT reached the runner: its running cells were passed the signal and checkpointed."""


class Children:
  """The cells' processes, so that a SIGTERM/SIGINT to the runner reaches them (they checkpoint and exit 75)
  instead of leaving them training as orphans that hold their workdirs' leases; no new cell starts after it."""

  def __init__(self):
    self.signal = None
    self._procs: set[subprocess.Popen] = set()
    self._lock = threading.Lock()

  def install(self) -> dict:
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: signals stay with the caller
        pass
    return previous

  def _handle(self, signum, frame):
    del frame
    self.signal = signum
    logging.warning("received %s: passing it to the running cells (they checkpoint), starting no new cell",
                    signal.Signals(signum).name)
    with self._lock:
      for proc in self._procs:
        proc.send_signal(signal.SIGTERM)

  def run(self, cmd: list[str], **kwargs) -> int:
    with self._lock:
      if self.signal is not None:
        return 75
      proc = subprocess.Popen(cmd, **kwargs)  # pylint: disable=consider-using-with  # waited on below
      self._procs.add(proc)
    try:
      return proc.wait()
    finally:
      with self._lock:
        self._procs.discard(proc)
