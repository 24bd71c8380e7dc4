"""The trainer's persistent XLA compilation cache: a relaunch (after a preemption, or the next run of a study
with the same shapes) loads its compiled steps from disk instead of compiling them again.

JAX opens the cache directory once per process, at the first compilation that consults it, so `enable` runs
before anything is compiled (the first lines of loop.run); in a process that already has a cache directory
(JAX_COMPILATION_CACHE_DIR, or an earlier run in the same process) that one is kept. Measured first launch vs
relaunch: docs/performance.md.
"""

from __future__ import annotations

import logging
import os

import jax

ENV_DIR = "CPT_JAX_COMPILE_CACHE"  # the default directory, when set (the tests point it at a temporary one)
MIN_COMPILE_SECONDS = 1.0  # quicker compiles are not worth a disk write and a read (JAX's default)


def default_dir() -> str:
  """$CPT_JAX_COMPILE_CACHE, else jax_cache under the user cache directory (~/.cache/cpt_jax)."""
  if os.environ.get(ENV_DIR):
    return os.environ[ENV_DIR]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "cpt_jax", "jax_cache")


def enable(train_cfg) -> str | None:
  """Turns the cache on (train.compile_cache, train.compile_cache_dir) or off; returns the directory in use."""
  if not train_cfg.compile_cache:
    jax.config.update("jax_enable_compilation_cache", False)
    logging.info("compilation cache: off (train.compile_cache=False)")
    return None
  jax.config.update("jax_enable_compilation_cache", True)  # an earlier run in this process may have turned it off
  path = train_cfg.compile_cache_dir or default_dir()
  current = jax.config.jax_compilation_cache_dir
  if current and current != path:
    asked = train_cfg.compile_cache_dir
    ignored = f"; train.compile_cache_dir={asked!r} not used" if asked else ""
    logging.info("compilation cache: %s (set before this run, e.g. by JAX_COMPILATION_CACHE_DIR%s)", current, ignored)
    return current
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  logging.info("compilation cache: %s (compiles over %.1f s are kept; train.compile_cache=False turns it off)", path,
               MIN_COMPILE_SECONDS)
  return path
