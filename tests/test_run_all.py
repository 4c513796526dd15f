import run_all


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
