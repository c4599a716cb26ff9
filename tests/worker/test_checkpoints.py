"""A task's checkpoint folder packed and unpacked (regular files and folders
only, nothing outside the folder), and the owner's input idle time."""

from __future__ import annotations

import io
import os
import tarfile
import time

import pytest

from styxgrid.worker import checkpoints, owner


def packed(folder) -> tarfile.TarFile:
    out = os.open(folder.parent / "ck.tar", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        assert checkpoints.pack(str(folder), out, None) > 0
        os.lseek(out, 0, os.SEEK_SET)
        return tarfile.open(fileobj=io.BytesIO(os.read(out, 1 << 20)))
    finally:
        os.close(out)


def test_only_regular_files_and_folders_are_packed_without_set_id_bits(tmp_path):
    folder = tmp_path / "ck"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "n").write_text("7\n")
    (folder / "s").write_text("x")
    os.chmod(folder / "s", 0o4755)
    os.symlink("/etc/shadow", folder / "link")
    os.mkfifo(folder / "fifo")
    with packed(folder) as tar:
        members = {m.name: m for m in tar}
    assert sorted(members) == [".", "./deep", "./deep/n", "./s"]
    assert members["./s"].mode == 0o755 and members["./s"].uid == 0


def test_an_empty_folder_packs_to_nothing(tmp_path):
    (tmp_path / "ck").mkdir()
    out = os.open(tmp_path / "ck.tar", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert checkpoints.pack(str(tmp_path / "ck"), out, None) == 0
        assert checkpoints.pack(str(tmp_path / "gone"), out, None) == 0
    finally:
        os.close(out)


def hostile_tar(path) -> None:
    with tarfile.open(path, "w") as tar:
        for name, kind in (("../escaped", tarfile.REGTYPE), ("/abs", tarfile.REGTYPE),
                           ("ok/../../up", tarfile.REGTYPE), ("link", tarfile.SYMTYPE),
                           ("hard", tarfile.LNKTYPE), ("dev", tarfile.CHRTYPE),
                           ("good", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            data = b"data" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            info.mode = 0o6755
            tar.addfile(info, io.BytesIO(data))


def test_a_hostile_checkpoint_unpacks_only_its_plain_files_inside_the_folder(tmp_path):
    hostile_tar(tmp_path / "h.tar")
    target = tmp_path / "in" / "ck"
    target.mkdir(parents=True)
    fd = os.open(tmp_path / "h.tar", os.O_RDONLY)
    try:
        checkpoints.unpack(fd, str(target), None)
    finally:
        os.close(fd)
    assert os.listdir(target) == ["good"]
    assert (target / "good").read_bytes() == b"data"
    assert os.stat(target / "good").st_mode & 0o7777 == 0o755
    assert sorted(os.listdir(tmp_path)) == ["h.tar", "in"]
    assert os.listdir(tmp_path / "in") == ["ck"]


def test_input_idle_is_the_newest_use_of_an_input_device(tmp_path, monkeypatch):
    monkeypatch.setattr(owner, "INPUT", str(tmp_path))
    assert owner.input_idle() is None                    # no devices: never "used"
    (tmp_path / "event0").touch()
    (tmp_path / "js0").touch()                           # not a keyboard or mouse
    then = time.time() - 100
    os.utime(tmp_path / "event0", (then, then))
    assert 99 <= owner.input_idle() <= 110
    (tmp_path / "mice").touch()
    assert owner.input_idle() < 10


def test_a_checkpoint_too_deep_too_big_or_of_fifos_is_refused_or_left_out(tmp_path):
    deep = tmp_path / "deep"
    (deep / "/".join(["d"] * 70)).mkdir(parents=True)
    out = os.open(tmp_path / "out.tar", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with pytest.raises(checkpoints.CheckpointError, match="deeper than 64"):
            checkpoints.pack(str(deep), out, None)
        big = tmp_path / "big"
        big.mkdir()
        with open(big / "sparse", "wb") as f:
            f.truncate(2 << 30)                      # 2 GiB of nothing, on no disk
        with pytest.raises(checkpoints.CheckpointError, match="over 1024 MiB"):
            checkpoints.pack(str(big), out, None)
        assert os.fstat(out).st_size < 1 << 20       # stopped before writing it
    finally:
        os.close(out)


def test_hard_links_are_packed_as_the_files_they_are(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "a").write_text("same\n")
    os.link(folder / "a", folder / "b")
    with packed(folder) as tar:
        assert tar.extractfile("./a").read() == tar.extractfile("./b").read() == b"same\n"


def test_a_sparse_member_is_not_unpacked(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("huge")
        info.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(info)
    (tmp_path / "ck").mkdir()
    fd = os.open(tmp_path / "s.tar", os.O_RDONLY)
    try:
        checkpoints.unpack(fd, str(tmp_path / "ck"), None)
    finally:
        os.close(fd)
    assert os.listdir(tmp_path / "ck") == []
