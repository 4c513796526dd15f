import pytest

from minimal.files import atomic_file


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
