"""The FUSE mount, driven by real shell commands (bash -c) through a real mount of a
real scheduler, and of `styxgrid exportfs`."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import time

import pytest

from ..helpers import REPO, STYXGRID

TIMEOUT = 60


def sh(script: str, *, check: bool = True, timeout: float = TIMEOUT,
       cwd: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            timeout=timeout, cwd=cwd)
    if check:
        assert result.returncode == 0, f"{script!r}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture
def mounted(grid, proc):
    """The grid, one worker with 2 slots, mounted at DIR/mnt; yields the mount point."""
    grid.start_worker("w1", 2)
    mnt = os.path.join(grid.dir, "mnt")
    os.mkdir(mnt)
    m = proc(["mount", "--foreground", grid.sock, mnt], r"mounted on")
    yield mnt
    m.stop()
    assert not os.path.ismount(mnt)


def test_shell_drives_the_grid(mounted):
    g = mounted
    sh(f"echo 'submit echo hi' > {g}/new")
    assert sh(f"cat {g}/jobs/1/wait").stdout.split()[:2] == ["1", "done"]
    assert sh(f"cat {g}/jobs/1/stdout").stdout == "hi\n"
    assert sh(f"cat {g}/jobs/1/status").stdout.startswith("1 done tasks=1 ")
    out = sh(f"exec 3<>{g}/new; echo 'submit sh -c \"echo clone\"' >&3; read id <&3; "
             f"echo $id; cat {g}/jobs/$id/wait >/dev/null; cat {g}/jobs/$id/stdout").stdout
    assert out == "2\nclone\n"
    assert sh(f"ls {g}/jobs").stdout.split() == ["1", "2"]
    assert sh(f"ls {g}/nodes").stdout.split() == ["index", "w1"]
    assert sh(f"cat {g}/nodes/*/status").stdout.startswith("w1 ")
    assert sh(f"ls {g}").stdout.split() == ["ctl", "data", "errstr", "events", "jobs",
                                           "new", "nodes", "stats", "users", "work"]


def test_cat_wait_blocks_until_the_job_ends(mounted):
    g = mounted
    sh(f"echo 'submit sleep 1' > {g}/new")
    start = time.monotonic()
    assert " done " in sh(f"cat {g}/jobs/1/wait").stdout
    assert time.monotonic() - start > 0.5


def test_bad_verb_fails_echo_and_errstr_names_it(mounted):
    g = mounted
    sh(f"echo 'submit echo x' > {g}/new")
    bad = sh(f"echo frobnicate > {g}/jobs/1/ctl", check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    assert "unknown verb 'frobnicate'" in sh(f"cat {g}/errstr").stdout
    bad = sh(f"echo 'tasks lots' > {g}/new", check=False)
    assert bad.returncode != 0
    assert "tasks: 'lots' is not a whole number" in sh(f"cat {g}/errstr").stdout
    missing = sh(f"cat {g}/jobs/99/status", check=False)
    assert missing.returncode != 0 and "No such file" in missing.stderr
    assert sh(f"ls {g}/jobs").stdout.split() == ["1"]


def test_a_description_written_line_by_line_reports_its_first_bad_line(mounted):
    """bash's printf writes each line on its own: the `tasks 0` error is the one the
    shell and errstr report, not the "no command" that `submit` would give after it;
    and the next description on the file starts afresh."""
    g = mounted
    bad = sh(f"exec 3>{g}/new; printf 'cmd true\\ntasks 0\\nsubmit\\n' >&3", check=False)
    assert bad.returncode != 0
    assert sh(f"cat {g}/errstr").stdout == "tasks: 0 is out of range (1..10000000)\n"
    out = sh(f"exec 3<>{g}/new; printf 'cmd sh -c \"echo $((6*7))\"\\ntasks 1\\nsubmit\\n' >&3;"
             f" read id <&3; cat {g}/jobs/$id/wait > /dev/null; cat {g}/jobs/$id/stdout")
    assert out.stdout == "42\n"


def test_errstr_keeps_the_message_not_the_mounts_lookups(mounted):
    g = mounted
    assert sh(f"ln -s new {g}/link", check=False).returncode != 0
    sh(f"ls {g}/no-such-file {g}/link", check=False)        # lookups that fail
    assert sh(f"cat {g}/errstr").stdout == \
        "symbolic links are not supported by a styxgrid mount (9P2000 has none)\n"
    sh(f"echo 'submit echo x' > {g}/new")
    assert sh(f"echo kill kill > {g}/jobs/1/ctl", check=False).returncode != 0
    sh(f"cat {g}/jobs/1/no-such-file {g}/jobs/2/status", check=False)
    assert sh(f"cat {g}/errstr").stdout == (
        "unknown verb 'kill kill': expected kill, hold, release, priority P, retry, remove, "
        "request_cpus N, request_memory SIZE, request_disk SIZE or request_gpus N\n")


READ = {"x86_64": "0", "aarch64": "63", "riscv64": "63"}[platform.machine()]


def in_read(pid: int) -> bool:
    """Whether the process sits in a read(2) (its number in /proc/PID/syscall)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == READ
    except (OSError, IndexError):
        return False


def test_sigint_ends_a_blocked_cat_within_a_second(mounted):
    g = mounted
    sh(f"echo 'submit sleep 60' > {g}/new")
    cat = subprocess.Popen(["cat", f"{g}/jobs/1/wait"], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not in_read(cat.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert in_read(cat.pid) and cat.poll() is None     # blocked in the read
    start = time.monotonic()
    cat.send_signal(signal.SIGINT)
    cat.wait(5)
    assert time.monotonic() - start < 1.0
    assert cat.returncode == -signal.SIGINT
    assert sh(f"cat {g}/jobs/1/status").stdout.split()[1] == "running"   # mount still works
    sh(f"echo kill > {g}/jobs/1/ctl")
    assert " killed " in sh(f"cat {g}/jobs/1/wait").stdout


def test_data_copy_in_and_out_and_folder_operations(mounted, tmp_path):
    g = mounted
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(50 * 1024 * 1024))
    sh(f"cp {big} {g}/data/big.bin && cp {g}/data/big.bin {tmp_path}/back.bin")
    sh(f"cmp {big} {tmp_path}/back.bin")
    sh(f"mkdir {g}/data/d && echo hello > {g}/data/d/f && mv {g}/data/d/f {g}/data/d/g")
    assert sh(f"cat {g}/data/d/g").stdout == "hello\n"
    assert sh(f"ls {g}/data/d").stdout.split() == ["g"]
    sh(f"mv {g}/data/d/g {g}/data/moved")          # across folders: copy and delete
    sh(f"rm {g}/data/moved {g}/data/big.bin && rmdir {g}/data/d")
    assert sh(f"ls {g}/data").stdout == ""


def test_what_9p_cannot_change_is_refused_through_the_mount(mounted):
    """chmod u+s, chgrp and touch -a fail with a message, not silently."""
    g = mounted
    sh(f"echo data > {g}/data/f && chmod 755 {g}/data/f")
    for command, why in ((f"chmod 4755 {g}/data/f", "set-user-id"),
                         (f"chgrp nogroup {g}/data/f", "keep their owner and group"),
                         (f"touch -a -d 2001-01-01 {g}/data/f", "atime cannot be changed")):
        out = sh(command, check=False)
        assert out.returncode != 0, command
        assert why in sh(f"cat {g}/errstr").stdout, command
    assert os.stat(f"{g}/data/f").st_mode & 0o7777 == 0o755
    sh(f"touch {g}/data/f && chmod 600 {g}/data/f")        # both times, and plain bits: fine
    assert os.stat(f"{g}/data/f").st_mode & 0o777 == 0o600


def test_a_root_mount_gives_every_local_user_his_own_rights_only(mounted):
    """Through root's mount `nobody` is nobody: no admin verbs, no other user's
    jobs or data, and what he submits is his."""
    g = mounted
    os.chmod(os.path.dirname(g), 0o755)
    sh(f"echo 'submit sleep 30' > {g}/new")                 # root's job 1
    sh(f"mkdir -p {g}/data/root && echo mine > {g}/data/root/f")
    nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups "
    for attack in (f"echo drain w1 > {g}/ctl", f"echo kill > {g}/jobs/1/ctl",
                   f"echo planted > {g}/data/root/f", f"echo new > {g}/data/root/g"):
        out = sh(nobody + f"sh -c '{attack}'", check=False)
        assert out.returncode != 0, attack
    assert sh(f"cat {g}/data/root/f").stdout == "mine\n"
    assert not os.path.exists(f"{g}/data/root/g")
    assert "running" in sh(f"cat {g}/ctl").stdout
    assert sh(f"cat {g}/jobs/1/status").stdout.split()[1] in ("queued", "running")
    own = sh(nobody + f"sh -c 'exec 3<>{g}/new; echo \"submit true\" >&3; read id <&3; "
             f"echo $id'").stdout.strip()
    assert "owner=nobody" in sh(f"cat {g}/jobs/{own}/status").stdout
    sh(f"echo kill > {g}/jobs/1/ctl")                       # root still may


def test_sweep_example(mounted):
    out = sh(f"{REPO}/scripts/examples/sweep.sh {mounted} 50").stdout
    assert out == f"tasks=50 sum={sum(t * t for t in range(50))} best_param=49 best={49 * 49}\n"


def test_mount_of_exportfs_copies_a_tree_exactly(proc, short_tmp):
    export = os.path.join(short_tmp, "export")
    os.mkdir(export)
    server = proc(["exportfs", export, "--listen", "127.0.0.1:0", "--insecure"], r"serving \S+ on (\S+)")
    mnt = os.path.join(short_tmp, "mnt")
    os.mkdir(mnt)
    m = proc(["mount", "--foreground", server.match.group(1), mnt], r"mounted on")
    sh(f"cp -r {REPO}/styxgrid {mnt}/copy")
    sh(f"diff -r {REPO}/styxgrid {export}/copy && diff -r {REPO}/styxgrid {mnt}/copy")
    m.stop()
    assert not os.path.ismount(mnt)


def test_unreachable_address_fails_clearly_and_mounts_nothing(short_tmp):
    mnt = os.path.join(short_tmp, "mnt")
    os.mkdir(mnt)
    result = subprocess.run([*STYXGRID, "mount", f"{short_tmp}/nobody.sock", mnt],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert "cannot mount" in result.stderr and "No such file" in result.stderr
    assert not os.path.ismount(mnt)


def test_background_mount_and_umount(grid, short_tmp):
    mnt = os.path.join(short_tmp, "mnt")
    os.mkdir(mnt)
    result = subprocess.run([*STYXGRID, "mount", grid.sock, mnt], capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    try:
        assert os.path.ismount(mnt)
        assert sh(f"cat {mnt}/stats").stdout.startswith("jobs=0 ")
    finally:
        subprocess.run([*STYXGRID, "umount", mnt], timeout=TIMEOUT)
    assert not os.path.ismount(mnt)


def test_scheduler_gone_gives_eio_then_the_mount_recovers(mounted, grid):
    g = mounted
    sh(f"echo 'submit echo before' > {g}/new")
    grid.scheduler.stop()
    start = time.monotonic()
    gone = sh(f"cat {g}/stats", check=False, timeout=20)
    assert gone.returncode != 0 and "Input/output error" in gone.stderr
    assert time.monotonic() - start < 10
    grid.start_scheduler()
    assert sh(f"cat {g}/jobs/1/wait").stdout.split()[:2] == ["1", "done"]


def test_styxgrid_up_mounts_the_local_grid(short_tmp):
    mnt = os.path.join(short_tmp, "grid")
    up = subprocess.Popen([*STYXGRID, "up", "--state", os.path.join(short_tmp, "st"),
                           "--workers", "1", "--mount", mnt], stderr=subprocess.PIPE,
                          text=True)
    try:
        for line in up.stderr:
            if "up: scheduler on" in line:
                break
        sh(f"echo 'submit echo via up' > {mnt}/new")
        assert sh(f"cat {mnt}/jobs/1/wait >/dev/null; cat {mnt}/jobs/1/stdout").stdout \
            == "via up\n"
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(15) == 0
        up.stderr.close()
    assert not os.path.ismount(mnt)

