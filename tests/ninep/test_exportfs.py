"""`styxgrid exportfs` checked by two independent 9P clients, and its confinement."""

import os
import pwd
import subprocess
import sys

import pytest
import trio

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import open_client

from ..conformance import check_both
from ..helpers import REPO, STYXGRID


@pytest.fixture
def export(tmp_path):
    root = tmp_path / "export"
    (root / "w").mkdir(parents=True)
    (root / "hello.txt").write_text("hello world\n")
    (root / "w" / "f.txt").write_text("original\n")
    (tmp_path / "secret").write_text("outside\n")
    os.symlink(tmp_path / "secret", root / "escape")
    os.symlink("hello.txt", root / "inside")
    return root


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_conformance_through_independent_clients(proc, export, short_tmp, transport):
    listen = "127.0.0.1:0" if transport == "tcp" else f"{short_tmp}/9p.sock"
    insecure = ["--insecure"] if transport == "tcp" else []
    server = proc(["exportfs", str(export), "--listen", listen, *insecure],
                  r"serving \S+ on (\S+)")
    for report in check_both(server.match.group(1), uname="root", path="hello.txt",
                             wfile="w/f.txt", wdir="w"):
        assert not report.failed and not report.skipped, report
    assert (export / "w" / "f.txt").read_text() == "original\n"


def test_paths_never_leave_the_export(proc, export):
    server = proc(["exportfs", str(export), "--listen", "127.0.0.1:0", "--insecure"], r"serving \S+ on (\S+)")

    async def check():
        async with open_client(server.match.group(1), uname="root") as c:
            assert await c.read_file("inside") == b"hello world\n"
            with pytest.raises(NinePError, match="leaves the exported tree"):
                await c.read_file("escape")
            assert await c.read_file("../../hello.txt") == b"hello world\n"  # .. stops at root
            names = {s.name for s in await c.ls("")}
            assert "escape" not in names and "hello.txt" in names
            with pytest.raises(NinePError):
                await c.create("a/b")
    trio.run(check)


def test_wstat_rename_truncate_mode(proc, export):
    from styxgrid.ninep import DMDIR, Stat
    server = proc(["exportfs", str(export), "--listen", "127.0.0.1:0", "--insecure"], r"serving \S+ on (\S+)")

    async def check():
        async with open_client(server.match.group(1), uname="root") as c:
            await c.write_file("w/g.txt", b"0123456789")
            await c.wstat("w/g.txt", Stat.dont_touch(length=4))
            await c.wstat("w/g.txt", Stat.dont_touch(name="h.txt", mode=0o600))
            st = await c.stat("w/h.txt")
            assert (st.length, st.mode & 0o777) == (4, 0o600)
            assert await c.read_file("w/h.txt") == b"0123"
            await c.create("w/sub", perm=DMDIR | 0o755, mode=0)
            await c.remove("w/sub")
            await c.remove("w/h.txt")
            assert sorted(s.name for s in await c.ls("w")) == ["f.txt"]
    trio.run(check)


def test_wstat_is_all_or_nothing_and_refuses_what_it_cannot_do(proc, export):
    """stat(5): a Twstat that fails changes nothing; atime, the group and the
    set-id bits are refused, not acknowledged and ignored."""
    from styxgrid.ninep import Stat
    server = proc(["exportfs", str(export), "--listen", "127.0.0.1:0", "--insecure"], r"serving \S+ on (\S+)")
    target = export / "w" / "g.txt"

    async def check():
        async with open_client(server.match.group(1), uname="root") as c:
            await c.write_file("w/g.txt", b"0123456789")
            os.chmod(target, 0o644)
            before = target.stat()
            refused = [
                (Stat.dont_touch(length=2, mode=0o600, name="f.txt"), "already exists"),
                (Stat.dont_touch(length=2, mode=0o4755), "set-user-id"),
                (Stat.dont_touch(length=2, atime=12345), "atime cannot be changed"),
                (Stat.dont_touch(length=2, gid="nogroup"), "group cannot be changed"),
            ]
            for change, why in refused:
                with pytest.raises(NinePError, match=why):
                    await c.wstat("w/g.txt", change)
                after = target.stat()
                assert (after.st_size, after.st_mode, after.st_mtime_ns) == \
                    (before.st_size, before.st_mode, before.st_mtime_ns), change
    trio.run(check)


def test_a_directory_is_never_removed_on_close(proc, export):
    """open(5): ORCLOSE on a directory is refused, at open and at create."""
    from styxgrid.ninep import DMDIR, ORCLOSE, OREAD
    server = proc(["exportfs", str(export), "--listen", "127.0.0.1:0", "--insecure"], r"serving \S+ on (\S+)")

    async def check():
        async with open_client(server.match.group(1), uname="root") as c:
            with pytest.raises(NinePError, match="cannot be removed on close"):
                await c.open("w", OREAD | ORCLOSE)
            with pytest.raises(NinePError, match="is a directory"):
                await c.create("w/d", perm=DMDIR | 0o755, mode=OREAD | ORCLOSE)
            f = await c.open("w", OREAD)
            await f.close()
        assert (export / "w").is_dir() and not (export / "w" / "d").exists()
    trio.run(check)


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
CLIENT = """
import sys, trio
from styxgrid.ninep.client import open_client
from styxgrid.ninep.errors import NinePError
async def main(sock, uname, *steps):
    try:
        async with open_client(sock, uname=uname) as c:
            for step in steps:
                verb, path = step.split(":", 1)
                try:
                    if verb == "read":
                        print("read", (await c.read_file(path)).decode().strip())
                    elif verb == "write":
                        await c.write_file(path, b"x")
                        print("wrote", path)
                    elif verb == "setuid":
                        f = await c.create(path, perm=0o4755)
                        await f.close()
                        print("made", path)
                except NinePError as exc:
                    print("refused", path, exc)
    except NinePError as exc:
        print("attach refused", exc)
trio.run(main, *sys.argv[1:])
"""


def as_nobody(sock: str, uname: str, *steps: str) -> str:
    out = subprocess.run([*AS_NOBODY, sys.executable, "-c", CLIENT, sock, uname, *steps],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_root_exportfs_acts_for_each_local_user_with_that_users_rights(proc, export,
                                                                         short_tmp):
    sock = f"{short_tmp}/9p.sock"
    os.chmod(short_tmp, 0o755)
    (export / "private.txt").write_text("root only\n")
    os.chmod(export / "private.txt", 0o600)
    (export / "shared").mkdir(mode=0o777)
    os.chmod(export / "shared", 0o777)
    proc(["exportfs", str(export), "--listen", sock, "--socket-mode", "666"],
         r"serving \S+ on (\S+)")
    assert "attach refused permission denied: attach name 'root' is not your user 'nobody'" \
        in as_nobody(sock, "root", "read:private.txt")
    said = as_nobody(sock, "nobody", "read:hello.txt", "read:private.txt",
                     "write:shared/mine.txt", "write:w/f.txt", "setuid:shared/suid")
    assert "read hello world" in said
    assert "refused private.txt permission denied" in said
    assert "wrote shared/mine.txt" in said
    assert "refused w/f.txt permission denied" in said
    mine = (export / "shared" / "mine.txt").stat()
    assert (mine.st_uid, mine.st_gid) == (pwd.getpwnam("nobody").pw_uid,
                                          pwd.getpwnam("nobody").pw_gid)
    assert (export / "shared" / "suid").stat().st_mode & 0o7000 == 0
    assert (export / "w" / "f.txt").read_text() == "original\n"


def test_exportfs_refuses_plain_tcp_unless_told_and_keeps_its_socket_private(export,
                                                                              short_tmp):
    out = subprocess.run([*STYXGRID, "exportfs", str(export), "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "every attach name would be believed" in out.stderr
    sock = f"{short_tmp}/own.sock"
    server = subprocess.Popen([*STYXGRID, "exportfs", str(export), "--listen", sock],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in server.stderr.readline()
        assert os.stat(sock).st_mode & 0o777 == 0o600
    finally:
        server.terminate()
        server.wait()
