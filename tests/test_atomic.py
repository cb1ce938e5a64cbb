"""Atomic writes: all or nothing, the old file survives a failed write, modes as open() would give."""

import os
import stat

import pytest

from accelcal.atomic import atomic_write_text, atomic_write_with


def test_new_file_gets_umask_mode_and_content(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "sub" / "a.yaml", "x: 1\n")
    finally:
        os.umask(old)
    assert p.read_text() == "x: 1\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_existing_mode_is_kept(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("old\n")
    p.chmod(0o600)
    atomic_write_text(p, "new\n")
    assert p.read_text() == "new\n" and stat.S_IMODE(p.stat().st_mode) == 0o600


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("old\n")

    def boom(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_with(p, boom)
    assert p.read_text() == "old\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.yaml"]
