"""The workdir check that runs before anything compiles, as the processes of a multi-host run meet it: at once."""

from cpt_jax import paths, workdir


def test_processes_checking_one_workdir_at_once_do_not_trip_each_other(tmp_path, monkeypatch):
  """A second process checks the workdir between the first one's probe write and its delete (what two local
  processes of a multi-host run did under load): both checks pass and no probe is left behind."""
  path_type = type(paths.path(tmp_path))  # the class the check writes through (local or gs:// alike)
  write_text = path_type.write_text
  inner_checks = []

  def write_then_let_another_process_check(self, *args, **kwargs):
    out = write_text(self, *args, **kwargs)
    if not inner_checks:
      inner_checks.append(self.name)
      workdir.check(str(tmp_path / "run"))  # the other process, in full, before this one deletes its probe
    return out

  monkeypatch.setattr(path_type, "write_text", write_then_let_another_process_check)
  workdir.check(str(tmp_path / "run"))
  assert inner_checks and list((tmp_path / "run").iterdir()) == []
