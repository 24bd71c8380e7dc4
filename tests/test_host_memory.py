"""The CLIs' re-execution under glibc's huge-page tunable: when it happens, what it passes on, when it does not."""

import os
import subprocess
import sys

import pytest

from cpt_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("environ, glibc, thp, expected", [
    ({}, (2, 36), True, None),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, (2, 36), True, "already set"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"}, (2, 36), True,
     "GLIBC_TUNABLES sets glibc.malloc.hugetlb=0"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, (2, 36), True, None),
    ({host_memory.OPT_OUT_ENV: "0"}, (2, 36), True, f"{host_memory.OPT_OUT_ENV}=0"),
    ({}, (2, 31), True, "not Linux with glibc >= 2.35"),
    ({}, (), True, "not Linux with glibc >= 2.35"),
    ({}, (2, 36), False, "transparent huge pages are off in the kernel"),
])
def test_obstacle(environ, glibc, thp, expected):
  why = host_memory.obstacle(environ, glibc, thp)
  assert why == expected or (expected and why.startswith(expected))


@pytest.mark.parametrize("content, possible", [
    ("always [madvise] never\n", True), ("[always] madvise never\n", True), ("always madvise [never]\n", False)])
def test_thp_setting_is_read(tmp_path, content, possible):
  setting = tmp_path / "enabled"
  setting.write_text(content)
  assert host_memory._thp_possible(str(setting)) is possible
  assert host_memory._thp_possible(str(tmp_path / "missing")) is False


def test_reexec_keeps_arguments_and_other_tunables(monkeypatch):
  calls = []
  monkeypatch.setattr(host_memory, "obstacle", lambda: None)
  monkeypatch.setattr(host_memory.os, "execve", lambda *a: calls.append(a))
  monkeypatch.setattr(host_memory.sys, "orig_argv", ["python", "-m", "cpt_jax.train", "--workdir", "w"])
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
  host_memory.reexec_with_huge_pages()
  (path, argv, env), = calls
  assert path == sys.executable and argv == [sys.executable, "-m", "cpt_jax.train", "--workdir", "w"]
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_no_reexec_where_there_is_an_obstacle(monkeypatch):
  monkeypatch.setattr(host_memory, "obstacle", lambda: "already set")
  monkeypatch.setattr(host_memory.os, "execve", lambda *a: pytest.fail("re-executed"))
  host_memory.reexec_with_huge_pages()


def test_a_command_runs_again_once_with_the_tunable():
  """A real process: it re-executes itself, then (tunable present) runs its work exactly once."""
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_memory.OPT_OUT_ENV)}
  if host_memory.obstacle(env) is not None:
    pytest.skip(f"no huge pages to ask for here: {host_memory.obstacle(env)}")
  code = ("from cpt_jax import host_memory; host_memory.reexec_with_huge_pages(); import os; "
          "print(os.getpid(), os.environ.get('GLIBC_TUNABLES')); print(host_memory.describe())")
  env["PYTHONPATH"] = ROOT
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
  first, second = out.strip().splitlines()
  assert first.split()[1] == host_memory.TUNABLE
  assert second.startswith("host memory: transparent huge pages")
  env[host_memory.OPT_OUT_ENV] = "0"
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
  assert out.splitlines()[0].split()[1] == "None" and f"4 KiB pages ({host_memory.OPT_OUT_ENV}=0)" in out
