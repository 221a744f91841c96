"""Output files: atomic writes, outputs never over inputs, clear errors up front."""

from __future__ import annotations

import os
import stat

import pytest

from evplanner._io import atomic_write, check_outputs, write_files

# ---------------------------------------------------------------- atomic_write


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent.parent == tmp_path and tmp.name == "out.txt"
        assert not tmp.exists()
        tmp.write_text("new")
        # Until the block ends, readers see the old content.
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_nothing_written_is_an_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_write(target):
            pass
    assert target.read_text() == "old"


def test_atomic_write_follows_symlink(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_files({link: b"new"})
    assert link.is_symlink() and real.read_text() == "new"


# ---------------------------------------------------------------- write_files


def test_write_files_is_all_or_nothing(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("old a")
    with pytest.raises(OSError):
        write_files({a: b"new a", tmp_path / "missing" / "b.json": b"new b"})
    assert a.read_text() == "old a"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]  # no temporaries
    write_files({a: b"new a", tmp_path / "b.json": b"new b"})
    assert a.read_text() == "new a" and (tmp_path / "b.json").read_text() == "new b"


def test_output_equal_to_input_is_refused(tmp_path):
    data = tmp_path / "v.csv"
    data.write_text("lon,lat\n-122.3,47.6\n")
    with pytest.raises(ValueError, match=r"--out .*v\.csv is also the input --input"):
        check_outputs({"--out": data}, {"--input": str(data)})
    # Another spelling of the same file, a glob, a symlink and a hard link.
    other = tmp_path / "sub"
    other.mkdir()
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    for out in (other / ".." / "v.csv", tmp_path / "link.csv", tmp_path / "hard.csv"):
        with pytest.raises(ValueError, match="is also the input"):
            check_outputs({"--out": out}, {"--input": str(data)})
    with pytest.raises(ValueError, match="is also the input --fixed"):
        check_outputs(
            {"--out": data}, {"--input": None, "--fixed": [tmp_path / "*.csv"]}
        )
    assert data.read_text() == "lon,lat\n-122.3,47.6\n"


def test_two_outputs_on_one_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--metrics .* is also the output --out"):
        check_outputs({"--out": tmp_path / "a.json", "--metrics": tmp_path / "a.json"})


def test_good_outputs_pass(tmp_path):
    (tmp_path / "v.csv").write_text("lon,lat\n")
    out = check_outputs(
        {"--out": str(tmp_path / "sites.geojson"), "--plot": None},
        {"--input": str(tmp_path / "v.csv")},
    )
    assert out == {"--out": tmp_path / "sites.geojson"}


def test_missing_or_unwritable_directory(tmp_path):
    with pytest.raises(ValueError, match=r"--out .*: directory .*nope does not exist"):
        check_outputs({"--out": tmp_path / "nope" / "sites.csv"})
    with pytest.raises(ValueError, match="expected a file name, got a directory"):
        check_outputs({"--out": tmp_path})
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"file is not a directory"):
        check_outputs({"--out": tmp_path / "file" / "sites.csv"})
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(ValueError, match="is not writable"):
            check_outputs({"--out": locked / "sites.csv"})
    finally:
        locked.chmod(stat.S_IRWXU)
