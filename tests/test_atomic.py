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


def test_next_write_removes_temp_files_of_killed_writers_only(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "node.yaml"
    target.write_text("old\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is now free: a writer that was SIGKILLed mid-write leaves such a file
    orphan = tmp_path / f".node.yaml.{dead.pid}.abc123.tmp"
    orphan.write_text("half a profi")
    live = tmp_path / f".node.yaml.{os.getppid()}.def456.tmp"  # a writer still running: not ours to delete
    live.write_text("in progress")
    other = tmp_path / f".other.yaml.{dead.pid}.abc123.tmp"  # another target's temp file stays too
    other.write_text("x")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert not orphan.exists()
    assert live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".node.yaml.")) == [live.name]


def test_a_folder_that_refuses_the_write_is_named_by_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    from accelcal.atomic import atomic_write_text

    def refuse(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".out.json.1.x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError) as exc:
        atomic_write_text(tmp_path / "out.json", "{}")
    assert exc.value.filename == str(tmp_path / "out.json") and exc.value.errno == errno.EROFS
    assert "cannot write here (Read-only file system)" in str(exc.value) and ".tmp" not in str(exc.value)


@pytest.mark.parametrize("code, rc", [("EROFS", 2), ("EACCES", 2), ("ENOSPC", 1)])
def test_a_destination_that_cannot_be_written_is_bad_input_and_a_full_disk_a_failed_run(tmp_path, monkeypatch, capsys,
                                                                                       code, rc):
    import errno
    import tempfile

    from accelcal.cli import main

    def refuse(*a, **kw):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(tmp_path / ".env.json.1.x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["env", "--json-out", str(tmp_path / "env.json")]) == rc
    assert f"accelcal env: error: {tmp_path / 'env.json'}: cannot write here" in capsys.readouterr().err


def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_folder_device_or_pipe_is_refused_by_name_and_left_as_it_is(tmp_path):
    import errno

    folder = tmp_path / "out.json"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        atomic_write_text(folder, "{}")
    assert exc.value.errno == errno.EISDIR and exc.value.filename == str(folder) and folder.is_dir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "stdout"
    link.symlink_to(fifo)
    for target in (fifo, link):
        with pytest.raises(ValueError, match="is not a regular file .a device, pipe or socket."):
            atomic_write_text(target, "{}")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and link.is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_write_names_the_target_not_the_temporary_file(tmp_path):
    import errno

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    with pytest.raises(OSError) as exc:
        atomic_write_with(tmp_path / "a.png", full)
    assert exc.value.filename == str(tmp_path / "a.png") and exc.value.errno == errno.ENOSPC


def test_env_json_out_refuses_an_existing_file_without_force(tmp_path, capsys):
    from accelcal.cli import main

    out = tmp_path / "kernels.env.json"
    out.write_text('{"device": "cuda:0"}\n')
    assert main(["env", "--device", "cpu", "--json-out", str(out)]) == 2
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert out.read_text() == '{"device": "cuda:0"}\n'
    assert main(["env", "--device", "cpu", "--json-out", str(out), "--force"]) == 0
    assert '"device_type": "cpu"' in out.read_text()


def test_a_file_where_a_folder_of_the_path_goes_is_named(tmp_path):
    import errno

    (tmp_path / "afile").write_text("x\n")
    with pytest.raises(NotADirectoryError) as exc:
        atomic_write_text(tmp_path / "afile" / "sub" / "x.json", "{}")
    assert exc.value.errno == errno.ENOTDIR and f"{tmp_path / 'afile'} is a file, not a folder" in str(exc.value)
    assert exc.value.filename == str(tmp_path / "afile" / "sub" / "x.json")
