"""Bad input gets one clear error naming the field or file, a non-zero exit, and loses nothing already saved.

Most cases run in-process (config.validate / loop.run, asserting the exception and its key words); the CLI
cases check the exit code, exactly one `error:` line on stderr and no traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cpt_jax import checkpoint, config as config_lib, loop
from cpt_jax.data.records import DataError

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

ConfigError = config_lib.ConfigError
ADAPT = {"stage": "adapt", "data.target.kind": "babi", "init_from": "/"}  # "/" exists: passes that check

VALIDATE_CASES = [  # (id, overrides, devices, key words of the message)
    ("zero_layers", {"model.num_layers": 0}, 1, ["model.num_layers", "> 0"]),
    ("negative_d_model", {"model.d_model": -64}, 1, ["model.d_model", "> 0"]),
    ("zero_max_len", {"model.max_len": 0}, 1, ["model.max_len", "> 0"]),
    ("heads_do_not_divide", {"model.num_heads": 3}, 1, ["model.num_heads", "divide"]),
    ("zero_batch", {"data.batch_size": 0}, 1, ["data.batch_size", "> 0"]),
    ("negative_lr", {"opt.lr": -1e-3}, 1, ["opt.lr", "> 0"]),
    ("zero_vocab", {"data.vocab_size": 0}, 1, ["data.vocab_size", "> 0"]),
    ("dropout_one", {"model.dropout": 1.0}, 1, ["model.dropout", "[0, 1)"]),
    ("dropout_negative", {"model.dropout": -0.1}, 1, ["model.dropout", "[0, 1)"]),
    ("min_lr_ratio_above_one", {"opt.min_lr_ratio": 1.5}, 1, ["opt.min_lr_ratio", "[0, 1]"]),
    ("b2_is_one", {"opt.b2": 1.0}, 1, ["opt.b2", "[0, 1)"]),
    ("replay_ratio_above_one", {**ADAPT, "replay.ratio": 1.5, "replay.kind": "real"}, 1, ["replay.ratio", "0.9"]),
    ("replay_ratio_negative", {**ADAPT, "replay.ratio": -0.25, "replay.kind": "real"}, 1, ["replay.ratio"]),
    ("replay_in_pretrain", {"replay.ratio": 0.25, "replay.kind": "real"}, 1, ["replay.ratio", "adapt"]),
    ("replay_kind_unknown", {**ADAPT, "replay.ratio": 0.25, "replay.kind": "imagined"}, 1, ["replay.kind"]),
    ("replay_rows_not_divisible", {**ADAPT, "replay.ratio": 0.25, "replay.kind": "real"}, 4,
     ["replay.ratio", "2 replay rows", "divisible", "4 data shards"]),
    ("mesh_does_not_divide_devices", {"mesh.data": 3}, 8, ["mesh", "3", "8"]),
    ("batch_not_divisible", {"data.batch_size": 6}, 4, ["data.batch_size", "divisible", "4"]),
    ("unknown_stage", {"stage": "finetune"}, 1, ["stage", "pretrain", "adapt"]),
    ("adapt_without_init_from", {**ADAPT, "init_from": ""}, 1, ["init_from", "adapt"]),
    ("adapt_init_from_missing", {**ADAPT, "init_from": "/nonexistent/run"}, 1, ["init_from", "no such directory"]),
    ("unknown_source_kind", {"data.base.kind": "ftp"}, 1, ["data.base.kind", "ftp", "corpus"]),
    ("babi_tasks_out_of_range", {**ADAPT, "data.target.babi_tasks": "1,21"}, 1,
     ["data.target.babi_tasks", "1..20"]),
    ("babi_tasks_not_numbers", {**ADAPT, "data.target.babi_tasks": "one"}, 1,
     ["data.target.babi_tasks"]),
    ("records_without_dataset", {"data.base.kind": "records", "data.base.path": "/nonexistent"}, 1,
     ["data.base.path", "dataset_info.json"]),
    ("max_documents_not_hf", {"data.base.max_documents": 100}, 1, ["data.base.max_documents", "hf sources only"]),
    ("max_documents_negative", {"data.base.kind": "hf", "data.base.name": "org/x", "data.base.max_documents": -1}, 1,
     ["data.base.max_documents", "≥ 0"]),
    ("no_token_budget", {"train.total_tokens": 0}, 1, ["train.total_tokens", "budget"]),
    ("copy_share_one", {"data.copy_share": 1.0}, 1, ["data.copy_share", "[0, 1)"]),
    ("babi_max_statements_negative", {**ADAPT, "data.target.kind": "babi", "data.target.babi_max_statements": -1}, 1,
     ["data.target.babi_max_statements", "≥ 0"]),
    ("negative_skips", {"train.max_nonfinite_skips": -1}, 1, ["train.max_nonfinite_skips", "≥ 0"]),
    ("save_at_ptpp_not_numbers", {"train.save_at_ptpp": "1,two"}, 1, ["train.save_at_ptpp", "numbers"]),
]


@pytest.mark.parametrize("overrides,devices,words", [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES])
def test_validate_names_the_field(tiny_config_factory, overrides, devices, words):
  with pytest.raises(ConfigError) as e:
    config_lib.validate(tiny_config_factory(**overrides), devices)
  for w in words:
    assert w in str(e.value), (w, str(e.value))


@pytest.fixture(scope="module")
def tokenizer(pretrained):
  return str(pretrained[0] / "tokenizer.model")


def _write(root: Path, files: dict[str, bytes]) -> str:
  root.mkdir(parents=True, exist_ok=True)
  for name, data in files.items():
    (root / name).write_bytes(data)
  return str(root / "{split}_*.txt")


def _run_error(cfg, workdir, exc):
  with pytest.raises(exc) as e:
    loop.run(cfg, str(workdir))
  return str(e.value)


def test_missing_data_files(tiny_config_factory, tokenizer, tmp_path):
  msg = _run_error(tiny_config_factory(**{"data.base.path": str(tmp_path / "nothing/{split}_*.txt"),
                                          "data.tokenizer": tokenizer}), tmp_path / "w", DataError)
  # the validation split is opened first (before compiling), so either split's pattern may be named
  assert "no files match" in msg and ("nothing/train_*.txt" in msg or "nothing/validation_*.txt" in msg)


def test_empty_split(tiny_config_factory, tokenizer, tmp_path):
  path = _write(tmp_path / "d", {"train_0.txt": b"Some text. " * 200, "validation_0.txt": b"  \n\n"})
  msg = _run_error(tiny_config_factory(**{"data.base.path": path, "data.tokenizer": tokenizer}), tmp_path / "w",
                   DataError)
  assert "validation_*.txt" in msg and "no records" in msg


def test_invalid_utf8(tiny_config_factory, tokenizer, tmp_path):
  path = _write(tmp_path / "d", {"train_0.txt": b"ok", "validation_0.txt": b"good text " * 50 + b"\xff\xfe bad"})
  msg = _run_error(tiny_config_factory(**{"data.base.path": path, "data.tokenizer": tokenizer}), tmp_path / "w",
                   DataError)
  assert "validation_0.txt" in msg and "not valid UTF-8" in msg and "byte 500" in msg


def test_tokenizer_file_missing(tiny_config_factory, tmp_path):
  msg = _run_error(tiny_config_factory(**{"data.tokenizer": str(tmp_path / "nope.model")}), tmp_path / "w",
                   DataError)
  assert "nope.model" in msg and "does not exist" in msg


def test_tokenizer_not_sentencepiece(tiny_config_factory, tmp_path):
  (tmp_path / "junk.model").write_text("not a model")
  msg = _run_error(tiny_config_factory(**{"data.tokenizer": str(tmp_path / "junk.model")}), tmp_path / "w",
                   DataError)
  assert "junk.model" in msg and "not a SentencePiece model" in msg


def test_resume_with_another_tokenizer(tiny_config_factory, pretrained, tmp_path):
  from cpt_jax.data.tokenizer import train_tokenizer  # pylint: disable=g-import-not-at-top
  other = train_tokenizer(["a b c d e f g. " * 100, "hello world " * 100], tmp_path / "other.model", 300)
  workdir = tmp_path / "w"
  shutil.copytree(pretrained[0], workdir)
  before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  msg = _run_error(tiny_config_factory(**{"data.tokenizer": str(other.path)}), workdir, DataError)
  assert "other.model" in msg and "vocab 300" in msg and "vocab 400" in msg and "new --workdir" in msg
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_vocab_too_small_to_train_a_tokenizer(tiny_config_factory, tmp_path):
  msg = _run_error(tiny_config_factory(**{"data.vocab_size": 50, "data.data_dir": str(tmp_path / "data")}),
                   tmp_path / "w", DataError)
  assert "data.vocab_size" in msg


def test_adapt_tokenizer_vocab_does_not_match_start_model(tiny_config_factory, pretrained, tmp_path):
  from cpt_jax.data.tokenizer import train_tokenizer  # pylint: disable=g-import-not-at-top
  other = train_tokenizer(["a b c d e f g. " * 100, "hello world " * 100], tmp_path / "other.model", 300)
  cfg = tiny_config_factory(**{"stage": "adapt", "init_from": str(pretrained[0]), "data.target.kind": "files",
                               "data.target.path": tiny_config_factory().data.base.path,
                               "data.tokenizer": str(other.path)})
  msg = _run_error(cfg, tmp_path / "w", checkpoint.CheckpointError)
  assert "does not match the model" in msg and "wte: checkpoint (400, 64) vs model (300, 64)" in msg
  assert "tokenizer" in msg


def test_checkpoint_from_another_model_size(tiny_config_factory, pretrained, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(pretrained[0], workdir)
  config_before = (workdir / "config.json").read_text()
  steps_before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  msg = _run_error(tiny_config_factory(**{"model.num_layers": 3}), workdir, ConfigError)  # config.json says so
  assert "model.num_layers: 2 → 3" in msg and "another config" in msg
  assert (workdir / "config.json").read_text() == config_before  # nothing saved is lost
  (workdir / "config.json").unlink()  # without it, the checkpoint's shapes tell
  msg = _run_error(tiny_config_factory(**{"model.num_layers": 3}), workdir, checkpoint.CheckpointError)
  assert "does not match the model" in msg and "blocks" in msg and "another model size" in msg
  assert not (workdir / "config.json").exists()  # a config that does not fit is never written
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps_before


def test_read_only_workdir(tiny_config_factory, tmp_path):
  if os.geteuid() == 0:  # root writes anywhere chmod allows; /sys/kernel refuses new files even to root
    workdir = Path("/sys/kernel")
    if not workdir.is_dir():
      pytest.skip("no read-only directory to test with")
  else:
    workdir = tmp_path / "ro"
    workdir.mkdir()
    workdir.chmod(0o555)
  msg = _run_error(tiny_config_factory(), workdir, ConfigError)
  assert str(workdir) in msg and "not writable" in msg


def test_no_pickle_of_data_read_from_disk():
  root = Path(__file__).parent.parent / "cpt_jax"
  bad = []
  for path in sorted(root.rglob("*.py")):
    for n, line in enumerate(path.read_text().splitlines(), 1):
      code = line.split("#")[0]
      if re.search(r"pickle\.loads?\(|allow_pickle\s*=\s*True|dill\.load|joblib\.load|torch\.load", code):
        bad.append(f"{path}:{n}: {line.strip()}")
      if re.search(r"\bnp\.load\(", code) and "allow_pickle=False" not in code:
        bad.append(f"{path}:{n}: {line.strip()} (np.load without allow_pickle=False)")
  assert not bad, bad

# ---- wrong paths: missing, the wrong kind of thing, damaged or unknown contents ----

START = {"stage": "adapt", "data.target.kind": "files", "data.target.path": "@base"}  # adapt on the base corpus
WRONG_PATH_CASES = [  # (id, overrides, workdir, exception, key words); "@x" is the path x of the `wrong` tree
    ("workdir_is_a_file", {}, "@a_file", ConfigError, ["a_file", "is a file", "--workdir"]),
    ("workdir_checkpoints_is_a_file", {}, "@wd_checkpoints_file", ConfigError, ["checkpoints is a file", "move it"]),
    ("workdir_metrics_is_a_directory", {}, "@wd_metrics_dir", ConfigError, ["metrics.jsonl is a directory"]),
    ("workdir_metrics_not_text", {}, "@wd_metrics_binary", ConfigError,
     ["metrics.jsonl", "not UTF-8", "move it aside"]),
    ("workdir_before_json_damaged", {}, "@wd_before", ConfigError, ["before.json", "backup", "new --workdir"]),
    ("workdir_tokenizer_damaged", {}, "@wd_tokenizer", ConfigError,
     ["tokenizer.model", "not a usable SentencePiece model", "new --workdir"]),
    ("records_path_is_a_file", {"data.base.kind": "records", "data.base.path": "@a_file"}, None, ConfigError,
     ["data.base.path", "is a file", "dataset_info.json"]),
    ("records_dataset_root_not_version", {"data.base.kind": "records", "data.base.path": "@rec/good"}, None,
     ConfigError, ["data.base.path", "no dataset_info.json", "did you mean", "good/1.0.0"]),
    ("records_info_damaged", {"data.target.kind": "records", "data.target.path": "@bad_info"}, None, ConfigError,
     ["data.target.path", "dataset_info.json", "not readable JSON"]),
    ("records_shards_missing", {"data.base.kind": "records", "data.base.path": "@rec/no_shards/1.0.0"}, None,
     DataError, ["no_shards", "unreadable", "shard file", "write the dataset again"]),
    ("records_shards_garbage", {"data.base.kind": "records", "data.base.path": "@rec/bad_shards/1.0.0"}, None,
     DataError, ["bad_shards", "shard file", "write the dataset again"]),
    ("records_shards_truncated", {"data.base.kind": "records", "data.base.path": "@rec/cut_shards/1.0.0"}, None,
     DataError, ["cut_shards", "shard file", "write the dataset again"]),
    ("tfds_unknown_name", {"data.base.kind": "tfds", "data.base.name": "no_such_dataset_xyz", "data.base.path": ""},
     None, DataError, ["no TFDS dataset 'no_such_dataset_xyz'", "name"]),
    ("tfds_data_dir_is_a_file", {"data.base.kind": "tfds", "data.base.name": "good", "data.base.path": "@a_file"},
     None, ConfigError, ["data.base.path", "is a file", "data_dir"]),
    ("tfds_not_prepared", {"data.base.kind": "tfds", "data.base.name": "mnist", "data.base.path": "@empty_dir"},
     None, DataError, ["'mnist' is not prepared", "tfds build mnist"]),
    ("files_glob_matches_directories", {"data.base.path": "@dirs/{split}_*.txt"}, None, DataError,
     ["_0.txt is a directory", "glob"]),
    ("files_path_is_a_directory", {"data.base.path": "@empty_dir"}, None, ConfigError,
     ["data.base.path", "is a directory", "{split}"]),
    ("files_binary", {"data.base.path": "@nul/{split}_*.txt"}, None, DataError, ["_0.txt is binary", "NUL byte"]),
    ("jsonl_not_records", {"data.base.path": "@jsonl/{split}_*.jsonl"}, None, DataError,
     ["_0.jsonl:1", "JSON object"]),
    ("tokenizer_is_a_directory", {"data.tokenizer": "@run"}, None, DataError,
     ["is a directory", "data.tokenizer", "run/tokenizer.model?"]),
    ("tokenizer_empty", {"data.tokenizer": "@empty.model"}, None, DataError, ["empty.model", "empty (0 bytes)"]),
    ("init_from_a_file", {**START, "init_from": "@a_file"}, None, ConfigError, ["init_from", "is a file"]),
    ("init_from_not_a_run", {**START, "init_from": "@not_a_run"}, None, DataError,
     ["not_a_run/config.json not found", "cpt_jax run"]),
    ("init_from_not_a_run_no_tokenizer", {**START, "init_from": "@not_a_run", "data.tokenizer": ""}, None, DataError,
     ["not_a_run is not the workdir of a cpt_jax run", "init_from"]),
    ("init_from_config_damaged", {**START, "init_from": "@run_bad_config"}, None, ConfigError,
     ["init_from", "config.json", "unreadable", "backup"]),
    ("init_from_no_checkpoints", {**START, "init_from": "@run_no_checkpoints"}, None, ConfigError,
     ["init_from", "checkpoints does not exist", "not saved a checkpoint"]),
    ("init_from_checkpoints_damaged", {**START, "init_from": "@run_bad_checkpoints"}, None, checkpoint.CheckpointError,
     ["no readable checkpoint", "run_bad_checkpoints", "another run"]),
    ("init_step_not_saved", {**START, "init_from": "@run", "init_step": 7}, None, ConfigError,
     ["init_step=7", "no committed step 7"]),
    ("replay_samples_not_a_dataset",
     {**START, "init_from": "@run", "replay.kind": "self", "replay.ratio": 0.25, "replay.samples": "@a_file"}, None,
     DataError, ["a_file", "is a file", "dataset_info.json"]),
]


@pytest.fixture(scope="module")
def wrong(pretrained, tmp_path_factory) -> Path:
  """Wrong paths of every kind, made once: files where directories belong and back, damaged datasets and
  tokenizers, and copies of the pretrained run each damaged in one way."""
  from cpt_jax.data import records  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("wrong")
  (root / "a_file").write_text("a file, not a directory")
  (root / "empty_dir").mkdir()
  (root / "empty.model").write_bytes(b"")
  for split in ("train", "validation"):
    (root / "dirs" / f"{split}_0.txt").mkdir(parents=True)
  _write(root / "nul", {"train_0.txt": b"\0" * 64, "validation_0.txt": b"\0" * 64})
  _write(root / "jsonl", {"train_0.jsonl": b"[1, 2]\n", "validation_0.jsonl": b"[1, 2]\n"})
  (root / "bad_info").mkdir()
  (root / "bad_info" / "dataset_info.json").write_text("{not json")
  texts = [f"The old king saw the river {i} times. " * 20 for i in range(8)]
  good = records.write_dataset(root / "rec", "good", {s: ({"text": t} for t in texts) for s in ("train", "validation")},
                               {"text": "text"})
  damages = {"no_shards": lambda f: f.unlink(), "bad_shards": lambda f: f.write_bytes(b"garbage" * 100),
             "cut_shards": lambda f: f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])}
  for name, damage in damages.items():
    shutil.copytree(good, root / "rec" / name / "1.0.0")
    for f in (root / "rec" / name / "1.0.0").glob("*.array_record-*"):
      damage(f)
  (root / "not_a_run").mkdir()
  (root / "not_a_run" / "notes.txt").write_text("not a cpt_jax run")

  def bad_checkpoints(d):
    for f in (d / "checkpoints").rglob("*"):
      if f.is_file() and f.name != "commit_success.txt":
        f.write_bytes(b"\xff" * 64)

  runs = {"run": lambda d: None,
          "run_bad_config": lambda d: (d / "config.json").write_text("{oops"),
          "run_no_checkpoints": lambda d: shutil.rmtree(d / "checkpoints"),
          "run_bad_checkpoints": bad_checkpoints,
          "wd_checkpoints_file": lambda d: (shutil.rmtree(d / "checkpoints"), (d / "checkpoints").write_text("x")),
          "wd_metrics_dir": lambda d: ((d / "metrics.jsonl").unlink(), (d / "metrics.jsonl").mkdir()),
          "wd_metrics_binary": lambda d: (d / "metrics.jsonl").write_bytes(b'{"step": 1}\n\xff\xfe\x00garbage'),
          "wd_before": lambda d: (d / "before.json").write_text('{"eval/base/loss": '),
          "wd_tokenizer": lambda d: (d / "tokenizer.model").write_bytes(b"junk" * 100)}
  for name, damage in runs.items():
    shutil.copytree(pretrained[0], root / name)
    damage(root / name)
  return root


def _tree(root: Path) -> dict[str, tuple[int, int]]:
  """Size and mtime of every file under `root` (or of `root` itself): equal before and after, nothing touched."""
  files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


@pytest.mark.parametrize("overrides,workdir,exc,words", [c[1:] for c in WRONG_PATH_CASES],
                         ids=[c[0] for c in WRONG_PATH_CASES])
def test_wrong_path_names_it(tiny_config_factory, tokenizer, wrong, tmp_path, overrides, workdir, exc, words):
  """Each wrong path fails with one message naming it and what to do, before training, touching nothing saved."""
  def resolve(v):
    if v == "@base":
      return tiny_config_factory().data.base.path
    return str(wrong / v[1:]) if isinstance(v, str) and v.startswith("@") else v

  cfg = tiny_config_factory(**{"data.tokenizer": tokenizer, **{k: resolve(v) for k, v in overrides.items()}})
  workdir = Path(resolve(workdir)) if workdir else tmp_path / "w"
  saved = [Path(p) for p in (workdir, cfg.init_from) if p and Path(p).exists()]
  before = [_tree(p) for p in saved]
  msg = _run_error(cfg, workdir, exc)
  for w in words:
    assert w in msg, (w, msg)
  assert [_tree(p) for p in saved] == before, "a saved file was changed"


# ---- through the CLI: exit code, one `error:` line, no traceback ----

@pytest.fixture(scope="module")
def cli(corpus_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  return cli_utils.cli_env(root, corpus_dir), root


def _cli_cases(pretrained_dir: Path, root: Path):
  wrong_size = root / "wrong_size"
  shutil.copytree(pretrained_dir, wrong_size)
  (root / "junk.model").write_text("junk")
  return [  # (id, args, env changes, exit code, key words)
      ("unknown_key", ["--config.model.n_layers=3"], {}, 2, ["unknown config field", "n_layers"]),
      ("wrong_type", ["--config.data.batch_size=eight"], {}, 2, ["batch_size", "eight"]),
      ("missing_config_file", ["--config=configs/nope.py"], {}, 2, ["configs/nope.py", "does not exist"]),
      ("not_sentencepiece", [], {"CPT_JAX_TEST_TOKENIZER": str(root / "junk.model")}, 2,
       ["junk.model", "not a SentencePiece model"]),
      ("another_model_size", ["--config.model.d_model=32"], {"CPT_JAX_TEST_TOKENIZER": ""}, 2,
       ["was trained with another config", "model.d_model: 64 → 32", "new --workdir"]),
      ("nan_loss", ["--config.opt.lr=1e30", "--config.opt.warmup_tokens=0", "--config.opt.clip_norm=0.0"], {}, 3,
       ["non-finite loss", "at step 2", "max_nonfinite_skips"]),
      ("workdir_not_creatable", [], {}, 2, ["cannot write", "writable --workdir"]),
  ], {"another_model_size": wrong_size, "workdir_not_creatable": root / "a_file" / "run"}


def test_cli_errors(cli, pretrained):
  env, root = cli
  (root / "a_file").write_text("a file, not a directory")
  cases, workdirs = _cli_cases(pretrained[0], root)

  def one(case):
    name, args, env_changes, _, _ = case
    workdir = workdirs.get(name, root / name)
    cmd = cli_utils.train_cmd(workdir, *args)
    if any(a.startswith("--config=") for a in args):
      cmd = [c for c in cmd if c != f"--config={cli_utils.CONFIG}"]
    import subprocess  # pylint: disable=g-import-not-at-top
    return subprocess.run(cmd, env={**env, **env_changes}, cwd=cli_utils.REPO, capture_output=True, text=True,
                          timeout=300, check=False)

  with ThreadPoolExecutor(2) as pool:
    results = list(pool.map(one, cases))
  for (name, _, _, code, words), r in zip(cases, results):
    errors = cli_utils.error_lines(r.stderr)
    assert r.returncode == code, (name, r.returncode, r.stderr[-3000:])
    assert len(errors) == 1 and "Traceback" not in r.stderr, (name, r.stderr[-3000:])
    for w in words:
      assert w in errors[0], (name, w, errors[0])


def test_cli_wrong_paths(cli, wrong):
  """Wrong paths through the real CLI: exit 2, one `error:` line naming the path, no traceback."""
  env, root = cli
  corpus = env["CPT_JAX_TEST_CORPUS"]
  cases = [  # (id, workdir, args, key words)
      ("workdir_is_a_file", wrong / "a_file", [], ["a_file is a file", "--workdir"]),
      ("tokenizer_is_a_directory", root / "w_tok", [f"--config.data.tokenizer={wrong / 'empty_dir'}"],
       ["empty_dir is a directory", "data.tokenizer"]),
      ("dataset_info_damaged", root / "w_info",
       ["--config.data.base.kind=records", f"--config.data.base.path={wrong / 'bad_info'}"],
       ["data.base.path", "bad_info", "dataset_info.json is not readable JSON"]),
      ("tfds_unknown_name", root / "w_tfds",
       ["--config.data.base.kind=tfds", "--config.data.base.name=no_such_dataset_xyz", "--config.data.base.path="],
       ["no TFDS dataset 'no_such_dataset_xyz'"]),
      ("init_from_not_a_run", root / "w_init",
       ["--config.stage=adapt", f"--config.init_from={wrong / 'not_a_run'}", "--config.data.target.kind=files",
        f"--config.data.target.path={corpus}"], ["not_a_run/config.json not found", "cpt_jax run"]),
  ]
  before = _tree(wrong / "a_file"), _tree(wrong / "not_a_run")
  with ThreadPoolExecutor(2) as pool:
    results = list(pool.map(lambda c: cli_utils.run_cli(env, c[1], *c[2]), cases))
  for (name, _, _, words), r in zip(cases, results):
    errors = cli_utils.error_lines(r.stderr)
    assert r.returncode == 2, (name, r.returncode, r.stderr[-3000:])
    assert len(errors) == 1 and "Traceback" not in r.stderr, (name, r.stderr[-3000:])
    for w in words:
      assert w in errors[0], (name, w, errors[0])
  assert (_tree(wrong / "a_file"), _tree(wrong / "not_a_run")) == before


def test_self_replay_on_the_fly_refused_on_several_processes(tiny_config_factory, monkeypatch):
  """Each process would call the one global sampler with its own shard's key: refused with what to do."""
  import jax  # pylint: disable=g-import-not-at-top
  from cpt_jax import build, model as model_lib, sharding  # pylint: disable=g-import-not-at-top
  cfg = tiny_config_factory(**ADAPT, **{"replay.kind": "self", "replay.ratio": 0.25, "replay.samples": ""})
  bundle = build.model_bundle(model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size),
                              sharding.make_mesh(cfg.mesh))
  tokenizer = types.SimpleNamespace(bos_id=2)  # the sampler needs only the BOS id
  assert build.replay_stream(cfg, tokenizer, None, bundle, None) is not None  # one process: fine
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(ConfigError) as e:
    build.replay_stream(cfg, tokenizer, None, bundle, None)
  assert "replay.samples" in str(e.value) and "generate_replay.py" in str(e.value)
