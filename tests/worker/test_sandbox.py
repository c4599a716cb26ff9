"""A task's folder, inputs kept per job, and the output files a task may hand back
(worker/sandbox.py), on real files."""

from __future__ import annotations

import os

import pytest

from styxgrid.describe import JobSpec
from styxgrid.exchange import TaskRecord
from styxgrid.ninep.errors import NinePError
from styxgrid.worker.link import TaskParser
from styxgrid.worker.sandbox import InputCache, Sandboxes, TaskRun, open_output


def test_a_reused_sandbox_is_empty_and_one_with_folders_is_not_reused(tmp_path):
    boxes = Sandboxes(str(tmp_path), keep=1)
    first = boxes.take(None)
    open(os.path.join(first, "left"), "w").close()
    os.makedirs(os.path.join(first, ".checkpoint", "kept", "deeper"))
    os.symlink("/etc", os.path.join(first, ".checkpoint", "out"))
    boxes.give_back(first, None)
    assert boxes.take(None) == first and os.listdir(first) == [".checkpoint"]
    assert os.listdir(os.path.join(first, ".checkpoint")) == [] and os.path.isdir("/etc")
    os.rmdir(os.path.join(first, ".checkpoint"))           # the task took it away
    os.symlink("/etc", os.path.join(first, ".checkpoint"))
    boxes.give_back(first, None)
    assert not os.path.exists(first) and boxes.kept == 0
    first = boxes.take(None)
    os.mkdir(os.path.join(first, "sub"))
    boxes.give_back(first, None)
    assert not os.path.exists(first) and boxes.kept == 0


def test_a_folder_is_reused_only_for_its_task_users_tasks(tmp_path):
    from styxgrid.worker.accounts import Account
    boxes = Sandboxes(str(tmp_path), keep=4)
    one, two = Account("one", 60001, 60001, "alice"), Account("two", 60002, 60002, "bob")
    first = boxes.take(one)
    assert os.stat(first).st_uid == 60001 and os.stat(first).st_mode & 0o777 == 0o700
    boxes.give_back(first, one)
    second = boxes.take(two)
    assert second != first and os.stat(second).st_uid == 60002
    assert boxes.take(one) == first
    boxes.give_back(first, one)
    os.chmod(first, 0o777)             # alice's task opened its folder to all...
    one.owner = "carol"                # ...and the account passed to carol
    third = boxes.take(one)
    assert third != first and not os.path.exists(first) and boxes.kept == 0


def test_input_cache_keeps_the_last_jobs(tmp_path):
    cache = InputCache(str(tmp_path), keep=2)
    for job in (1, 2, 3):
        local = cache.put(job, "/alice/in.dat", b"x" * job)
        assert open(local, "rb").read() == b"x" * job
    assert cache.get(1, "/alice/in.dat") is None and not (tmp_path / "1").exists()
    assert cache.get(3, "/alice/in.dat") is not None


def test_open_output_refuses_what_leads_out_or_is_not_a_file(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "ok.txt").write_text("fine")
    (tmp_path / "secret").write_text("key")
    os.symlink(tmp_path / "secret", folder / "link.txt")
    os.mkfifo(folder / "fifo")
    fd = open_output(str(folder), "ok.txt", None)
    assert os.read(fd, 10) == b"fine"
    os.close(fd)
    with pytest.raises(OSError, match="outside the task's folder"):
        open_output(str(folder), "link.txt", None)
    with pytest.raises(OSError, match="outside the task's folder"):
        open_output(str(folder), "../secret", None)
    with pytest.raises(OSError, match="not a regular file"):
        open_output(str(folder), "fifo", None)
    with pytest.raises(FileNotFoundError):
        open_output(str(folder), "missing", None)


def test_expand_names_the_task():
    run = TaskRun(7, 3, 10, "alice", JobSpec(cmd="sim"))
    assert run.expand("out.$STYXGRID_TASK.${STYXGRID_JOB}") == "out.3.7"


def test_the_task_parser_reads_records_and_parses_a_job_once():
    spec = JobSpec(cmd="/bin/echo", args=("hi",), tasks=2)
    text = spec.lines().encode()
    data = b"".join(TaskRecord.head(5, i, 2, "alice", len(text)) + text for i in range(2))
    parser = TaskParser()
    runs = parser.parse(data)
    assert [(r.job, r.index, r.tasks, r.owner) for r in runs] == [(5, 0, 2, "alice"),
                                                                   (5, 1, 2, "alice")]
    assert runs[0].spec is runs[1].spec and runs[0].spec.cmd == "/bin/echo"
    with pytest.raises(NinePError, match="from the scheduler"):
        parser.parse(b"task 1 0 1 alice 999\nshort")


def test_inputs_are_written_in_place_of_a_link_never_through_it(tmp_path):
    from styxgrid.worker.sandbox import place_input
    box, outside = tmp_path / "box", tmp_path / "outside.txt"
    (box / "run").mkdir(parents=True)
    outside.write_text("keep")
    os.symlink(outside, box / "run" / "in.dat")
    place_input(str(box), "run", "in.dat", b"new", 0o644, None)
    assert outside.read_text() == "keep"
    assert not os.path.islink(box / "run" / "in.dat")
    assert (box / "run" / "in.dat").read_bytes() == b"new"


def test_a_task_folder_reached_through_a_link_is_refused(tmp_path):
    from styxgrid.worker.sandbox import open_folder
    box, elsewhere = tmp_path / "box", tmp_path / "elsewhere"
    box.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, box / "run")
    with pytest.raises(OSError):
        open_folder(str(box), "run/deeper")
    assert not (elsewhere / "deeper").exists()
    folder = open_folder(str(box), "new/deeper")
    os.close(folder)
    assert (box / "new" / "deeper").is_dir()


def test_an_output_reached_through_a_linked_folder_is_refused(tmp_path):
    folder, elsewhere = tmp_path / "task", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret").write_text("key")
    os.symlink(elsewhere, folder / "sub")
    with pytest.raises(OSError, match="outside the task's folder"):
        open_output(str(folder), "sub/secret", None)


def test_a_folder_thousands_deep_with_links_out_is_removed_and_nothing_else(tmp_path):
    from styxgrid.worker.removal import empty_folder, remove_tree
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept\n")
    box = tmp_path / "box"
    box.mkdir()
    fd = os.open(box, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3000):                          # deeper than Python's recursion
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.symlink(outside, "link", dir_fd=fd)
    os.close(fd)
    os.symlink(outside, box / "toplink")
    (box / ".removing-1").mkdir()                  # a name the walk might have chosen
    empty_folder(str(box))
    assert os.listdir(box) == [] and (outside / "keep").read_text() == "kept\n"
    remove_tree(str(box))
    assert not box.exists() and outside.exists()
