import pytest

from minimal.app.files import atomic_file


def test_atomic_file_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    with atomic_file(path) as file:
        file.write(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(KeyboardInterrupt), atomic_file(path) as file:
        file.write(b"half of the sec")
        raise KeyboardInterrupt  # Ctrl-C half-way
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["out.bin"]  # no temporary left


def test_written_files_get_the_usual_mode_not_0600(tmp_path):
    import os
    import stat
    old = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "new.bin") as file:
            file.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640  # 0666 minus umask
    os.chmod(tmp_path / "new.bin", 0o604)
    with atomic_file(tmp_path / "new.bin") as file:  # replacing keeps the file's own mode
        file.write(b"y")
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o604


def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """A process killed mid-write (SIGKILL: no clean-up runs) leaves NAME.PID.XXXX.tmp; the
    next write to the same path removes it, but not a live writer's, nor other files'."""
    import os
    import signal
    import subprocess
    import sys
    import time
    target = tmp_path / "model.npz"
    script = ("import sys, time\nfrom minimal.app.files import atomic_file\n"
              "with atomic_file(sys.argv[1]) as f:\n"
              "    f.write(b'x' * 100000); f.flush(); print('writing', flush=True); "
              "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(target)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    (stale,) = tmp_path.glob("model.npz.*.tmp")
    assert f".{child.pid}." in stale.name and stale.stat().st_size == 100000
    live = tmp_path / f"model.npz.{os.getpid()}.abcd1234.tmp"  # a write in progress
    live.write_bytes(b"mine")
    old_unowned = tmp_path / "model.npz.k2j4h5g6.tmp"  # older naming, a day old
    old_unowned.write_bytes(b"old")
    os.utime(old_unowned, (time.time() - 86400,) * 2)
    other = tmp_path / "other.npz.999999.abcd.tmp"
    other.write_bytes(b"not ours")
    with atomic_file(target) as file:
        file.write(b"done")
    assert target.read_bytes() == b"done"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.npz", live.name, other.name])
