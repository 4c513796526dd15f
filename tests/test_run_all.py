import dataclasses
import os
import sys
import types

import pytest

import run_all
from minimal.errors import DataError


def test_targets():
    assert run_all.check_targets({"a": 1.0, "b": 0.1}, {"a": (">=", 1.0), "b": ("<=", 0.2)}) == []
    missed = run_all.check_targets({"a": 0.5}, {"a": (">=", 1.0), "b": ("<=", 0.2)})
    assert missed == ["a 0.5 < 1.0", "b missing"]
    assert run_all.check_targets({"a": float("nan")}, {"a": (">=", 0.0)}) == ["a nan < 0.0"]


def test_zero_demos_is_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_all, "demo_names", list)
    assert run_all.main([]) == 0
    assert (tmp_path / "outputs" / "summary.md").exists()


def test_broken_demo_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    row = run_all.run_demo("does_not_exist", quick=True)
    assert row["status"] == "ERROR"


def test_outputs_being_a_file_is_a_usage_error_before_any_demo_runs(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").write_text("not a folder")
    monkeypatch.setattr(run_all, "run_demo", lambda *a: pytest.fail("a demo started"))
    with pytest.raises(SystemExit) as exit_info:
        run_all.main(["dqn"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "outputs is a file; run_all.py writes each demo's figures" in err
    assert "Traceback" not in err


def test_a_user_error_in_a_demo_is_one_line_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("minimal.demos.fake")

    @dataclasses.dataclass
    class Config:
        out_dir: str = "outputs/fake"  # where figures go

    def run(config):
        raise DataError("datasets/mnist/train-images-idx3-ubyte.gz is truncated")

    module.Config, module.run, module.QUICK = Config, run, {}
    monkeypatch.setitem(sys.modules, "minimal.demos.fake", module)
    row = run_all.run_demo("fake", quick=True)
    assert row["status"] == "ERROR" and "is truncated" in row["detail"]
    err = capsys.readouterr().err
    assert err.strip() == "fake: datasets/mnist/train-images-idx3-ubyte.gz is truncated"
    assert '"status": "failed"' in (tmp_path / "outputs" / "fake" / "run.json").read_text()


def test_a_demo_that_pins_blas_to_one_thread_leaves_the_next_demo_its_threads(tmp_path,
                                                                              monkeypatch):
    """dqn and trpo call limit_blas_threads(1) for their own reasons; in run_all's one process
    the demos after them must get the thread count BLAS started with, not theirs."""
    from minimal.kernels import threads
    from minimal.kernels.process import limit_blas_threads

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(threads, "THREADS", 2)  # as if started on 2 cores (tests run at 1)
    module = types.ModuleType("minimal.demos.fake")

    @dataclasses.dataclass
    class Config:
        out_dir: str = "outputs/fake"  # where figures go

    seen = []

    def run(config):
        seen.append(os.environ["OPENBLAS_NUM_THREADS"])
        limit_blas_threads(1)
        return {}

    module.Config, module.run, module.QUICK = Config, run, {}
    monkeypatch.setitem(sys.modules, "minimal.demos.fake", module)
    try:
        limit_blas_threads(2)
        assert run_all.run_demo("fake", quick=True)["status"] == "pass"
        assert run_all.run_demo("fake", quick=True)["status"] == "pass"
        assert seen == ["2", "2"]  # the second run started with 2 threads again
    finally:
        limit_blas_threads(1)  # the tests' setting (conftest)
