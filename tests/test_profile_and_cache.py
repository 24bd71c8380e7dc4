"""train.profile_steps writes a trace of the asked steps; the compilation cache goes where the config says and
never, under the tests, into the user's cache directory."""

import json
import os
import subprocess
import sys
import tempfile

import jax
import pytest

from cpt_jax import compile_cache, config as config_lib, loop


def test_profile_steps_write_a_trace(tiny_config_factory, tmp_path):
  cfg = tiny_config_factory(**{"train.total_tokens": 8 * 32 * 4, "train.profile_steps": "2:3"})
  loop.run(cfg, str(tmp_path))
  files = [p for p in (tmp_path / "profile").rglob("*") if p.is_file()]
  kinds = {p.name.split(".", 1)[1] for p in files}
  assert {"xplane.pb", "trace.json.gz"} <= kinds, files  # TensorBoard's profile plugin; Perfetto
  assert all(p.stat().st_size > 0 for p in files), files
  # the run compiled with the tests' cache directory (tests/conftest.py), not the user's
  assert jax.config.jax_compilation_cache_dir.startswith(tempfile.gettempdir())


@pytest.mark.parametrize("spec", ["3", "0:2", "4:2", "a:b"])
def test_bad_profile_steps_are_named(tiny_config_factory, spec):
  with pytest.raises(config_lib.ConfigError, match="train.profile_steps"):
    config_lib.validate(tiny_config_factory(**{"train.profile_steps": spec}), 1)


def test_compile_cache_defaults_to_the_user_cache_directory_and_turns_off(tmp_path):
  """In a fresh process (JAX reads the setting once per process): the default directory, and off."""
  code = ("import json, jax, ml_collections; from cpt_jax import compile_cache as c; "
          "on = c.enable(ml_collections.ConfigDict({'compile_cache': True, 'compile_cache_dir': ''})); "
          "used = jax.config.jax_compilation_cache_dir; "
          "off = c.enable(ml_collections.ConfigDict({'compile_cache': False, 'compile_cache_dir': ''})); "
          "print(json.dumps([on, used, off, jax.config.jax_enable_compilation_cache]))")
  env = {k: v for k, v in os.environ.items() if k not in (compile_cache.ENV_DIR, "JAX_COMPILATION_CACHE_DIR")}
  env.update(XDG_CACHE_HOME=str(tmp_path), JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
  want = str(tmp_path / "cpt_jax" / "jax_cache")
  assert json.loads(out.stdout.splitlines()[-1]) == [want, want, None, False]
