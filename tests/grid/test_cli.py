"""The `styxgrid` command as a newcomer types it: one line for every mistake, with
the documented exit status, and jobs that never hang on their own outputs."""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess

import pytest

from styxgrid.cli.parser import parser
from styxgrid.ninep.client import open_client

from ..helpers import STYXGRID, TIMEOUT, submit, wait


@pytest.fixture
def cli(grid, tmp_path):
    """Run `styxgrid ARGS` against the grid, in a folder of its own."""
    env = {**os.environ, "STYXGRID_SCHEDULER": grid.sock}

    def run(*args: str, cwd=tmp_path, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*STYXGRID, *args], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT, cwd=cwd, **kw)
    return run


def test_outputs_every_task_would_share_are_refused_at_submit_with_a_hint(grid, cli):
    out = cli("submit", "-n", "4", "--output", "same.txt", "--", "sh", "-c",
              "echo $STYXGRID_TASK > same.txt")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("styxgrid: submit: output 'same.txt': all 4 tasks would store it "
                          "as outputs/same.txt; put $STYXGRID_TASK in its name (e.g. "
                          "same.$STYXGRID_TASK.txt) to keep one each\n")
    two = cli("submit", "--output", "a/r.txt", "--output", "b/r.txt", "--", "true")
    assert two.returncode == 2 and "'a/r.txt' is stored as outputs/r.txt too" in two.stderr
    grid.start_worker("w1", 2)
    job = cli("submit", "-n", "4", "--output", "same.$STYXGRID_TASK.txt", "--", "sh", "-c",
              "echo $STYXGRID_TASK > same.$STYXGRID_TASK.txt").stdout.strip()
    assert cli("wait", job).returncode == 0
    assert sorted(cli("ls", f"jobs/{job}/outputs").stdout.split()) == \
        [f"same.{i}.txt" for i in range(4)]
    assert cli("cat", f"jobs/{job}/outputs/same.3.txt").stdout == "3\n"


async def test_an_output_that_cannot_be_stored_fails_its_task_with_the_reason(grid):
    grid.start_worker("w1")
    go = os.path.join(grid.dir, "go")
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh -c 'while [ ! -e {go} ]; do sleep 0.05; done; "
                              "echo x > result.txt'\noutput result.txt\nsubmit\n")
        # something already in the way of the output: a folder of its name
        os.makedirs(os.path.join(grid.state, "spool", str(job), "outputs", "result.txt"))
        open(go, "w").close()
        assert (await wait(c, job)).split()[1] == "failed"
        status = (await c.read_file(f"jobs/{job}/tasks/0/status")).decode()
        assert status.startswith("0 failed exit=125 reason=output result.txt not stored: ")


def test_every_command_and_option_has_help():

    def walk(p: argparse.ArgumentParser, where: str) -> list[str]:
        missing = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, child in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{where} {name}")
                    missing += walk(child, f"{where} {name}")
            elif not action.help:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
        return missing
    assert walk(parser(), "styxgrid") == []


def lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.splitlines()


def test_the_scheduler_is_found_in_one_documented_order(grid, tmp_path):
    """--scheduler (before or after the verb), $STYXGRID_SCHEDULER, the stored
    login, the socket of a `styxgrid up` here or above; relative paths work."""
    top = tmp_path / "project"
    (top / ".styxgrid").mkdir(parents=True)
    (top / ".styxgrid" / "scheduler.sock").symlink_to(grid.sock)
    (top / "sub").mkdir()
    config = tmp_path / "config"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYXGRID")}
    env["XDG_CONFIG_HOME"] = str(config)

    def q(*args: str, cwd=top / "sub", **more: str) -> subprocess.CompletedProcess:
        return subprocess.run([*STYXGRID, *args], capture_output=True, text=True,
                              env={**env, **more}, timeout=TIMEOUT, cwd=cwd)
    assert q("q").returncode == 0                              # 4: up's socket above
    gone = "/nonexistent/env.sock"
    out = q("q", STYXGRID_SCHEDULER=gone)                      # 2 beats 4
    assert out.returncode == 1 and lines(out) == [
        f"styxgrid: q: cannot reach the scheduler at {gone}: No such file or directory"]
    assert q("--scheduler", grid.sock, "q", STYXGRID_SCHEDULER=gone).returncode == 0
    assert q("q", "--scheduler", grid.sock, STYXGRID_SCHEDULER=gone).returncode == 0
    assert q("--scheduler", gone, "q", "--scheduler", grid.sock).returncode == 0
    (config / "styxgrid" / "user").mkdir(parents=True)
    (config / "styxgrid" / "user" / "scheduler").write_text("/nonexistent/login.sock\n")
    out = q("q")                                               # 3 beats 4
    assert lines(out) == ["styxgrid: q: cannot reach the scheduler at "
                          "/nonexistent/login.sock: No such file or directory"]
    assert q("q", STYXGRID_SCHEDULER=grid.sock).returncode == 0   # 2 beats 3
    (config / "styxgrid" / "user" / "scheduler").unlink()
    out = q("q", cwd=tmp_path)
    assert out.returncode == 1 and lines(out) == [
        "styxgrid: q: no scheduler to talk to: give --scheduler ADDRESS, set "
        "STYXGRID_SCHEDULER, log in with `styxgrid login`, or run `styxgrid up` in this "
        "folder or one above it"]
    relative = os.path.relpath(grid.sock, grid.dir)
    assert q("--scheduler", relative, "q", cwd=grid.dir).returncode == 0


def test_programs_are_sent_only_when_given_relative(grid, cli, tmp_path):
    grid.start_worker("w1")
    (tmp_path / "bin").mkdir()
    sim = tmp_path / "bin" / "sim"
    sim.write_text("#!/bin/sh\necho \"$0 ran with $1\"\n")
    sim.chmod(0o755)
    me = pwd.getpwuid(os.getuid()).pw_name

    def run_job(*args: str) -> str:
        job = cli("submit", *args)
        assert job.returncode == 0, job.stderr
        cli("wait", job.stdout.strip())
        return cli("cat", f"jobs/{job.stdout.strip()}/stdout").stdout
    assert run_job("--", "bin/sim", "x") == "./sim ran with x\n"    # argv[0]: its own name
    assert run_job("--", "/bin/echo", "absolute") == "absolute\n"
    assert len(cli("ls", f"data/{me}/programs").stdout.split()) == 1   # only bin/sim went
    assert run_job("--send", "--", str(sim), "y") == "./sim ran with y\n"
    assert len(cli("ls", f"data/{me}/programs").stdout.split()) == 1   # same content
    job = cli("submit", "--no-send", "--", "bin/sim").stdout.strip()
    assert cli("wait", job).returncode == 1                    # not on the worker: 127
    assert "exit=127" in cli("cat", f"jobs/{job}/tasks/0/status").stdout
    out = cli("submit", "--", "./nope")
    assert out.returncode == 2 and lines(out) == [
        "styxgrid: submit: ./nope: no such file here to send along (--no-send runs it as "
        "it is on the workers)"]


def test_user_errors_are_one_line_with_the_documented_status(grid, cli, short_tmp):
    def says(result, status: int, line: str) -> None:
        assert (result.returncode, lines(result)) == (status, [line]), result
    says(cli("wait", "9999"), 1, "styxgrid: wait: no job 9999")
    says(cli("why", "9999"), 1, "styxgrid: why: no job 9999")
    says(cli("cat", "jobs/9999/stdout"), 1, "styxgrid: cat: no job 9999")
    says(cli("cat", "data/nope"), 1, "styxgrid: cat: data/nope: file does not exist")
    says(cli("wait", "abc"), 2, "styxgrid: wait: argument job: invalid int value: 'abc' "
                                "(see styxgrid wait --help)")
    says(cli("--scheduler", "host:port", "q"), 2,
         "styxgrid: q: bad address 'host:port': want HOST:PORT or a unix socket path")
    says(cli("submit"), 2, "styxgrid: submit: give the command after --, e.g. styxgrid "
                           "submit -- ./sim --seed 7")
    says(cli("write", "jobs/1/ctl", "kill"), 1, "styxgrid: write: no job 1")
    says(cli("mount", "host:port", short_tmp), 2,
         "styxgrid: mount: bad address 'host:port': want HOST:PORT or a unix socket path")
    grid.start_worker("w1")
    job = cli("submit", "-n", "3000", "--", "echo", "a line of output").stdout.strip()
    assert cli("wait", job).returncode == 0
    piped = subprocess.run(f"{' '.join(STYXGRID)} cat jobs/{job}/stdout | head -1",
                           shell=True, capture_output=True, text=True, timeout=TIMEOUT,
                           env={**os.environ, "STYXGRID_SCHEDULER": grid.sock})
    assert piped.stdout == "a line of output\n" and piped.stderr == ""


def test_data_commands_move_trees_both_ways(grid, cli, tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    tree = tmp_path / "inputs"
    (tree / "deep" / "er").mkdir(parents=True)
    (tree / "a b.txt").write_text("spaces\n")
    (tree / "empty").write_bytes(b"")
    (tree / "deep" / "er" / "big.bin").write_bytes(os.urandom(3 << 20))
    assert cli("mkdir", "-p", f"data/{me}/x/y").returncode == 0
    assert cli("mkdir", "-p", f"data/{me}/x/y").returncode == 0      # there already: fine
    assert cli("put", str(tree), f"data/{me}/x/").returncode == 0
    assert sorted(cli("ls", f"data/{me}/x/inputs").stdout.split("\n")) == \
        ["", "a b.txt", "deep/", "empty"]
    single = cli("put", str(tree / "a b.txt"), f"data/{me}/renamed.txt")
    assert single.returncode == 0 and cli("cat", f"data/{me}/renamed.txt").stdout == "spaces\n"
    back = tmp_path / "back"
    assert cli("get", f"data/{me}/x/inputs", f"data/{me}/renamed.txt", str(back)).returncode == 0
    for f in ("a b.txt", "empty", "deep/er/big.bin"):
        assert (back / "inputs" / f).read_bytes() == (tree / f).read_bytes()
    assert (back / "renamed.txt").read_text() == "spaces\n"
    out = cli("rm", f"data/{me}/x")
    assert out.returncode == 1 and lines(out) == [
        f"styxgrid: rm: data/{me}/x: folder not empty (rm -r removes it whole)"]
    assert cli("rm", "-r", f"data/{me}/x", f"data/{me}/renamed.txt").returncode == 0
    assert cli("ls", f"data/{me}").stdout == ""
    out = cli("put", str(tmp_path / "missing"), f"data/{me}/")
    assert out.returncode == 2 and lines(out) == [
        f"styxgrid: put: {tmp_path}/missing: no such file or folder here"]


def test_a_worker_finds_the_scheduler_in_the_same_order(grid, proc, tmp_path):
    """No --scheduler: $STYXGRID_SCHEDULER, as for every command."""
    proc(["worker", "--name", "by-env", "--slots", "1", "--workdir", str(tmp_path / "w")],
         r"joined", env={"STYXGRID_SCHEDULER": grid.sock, "XDG_CONFIG_HOME": str(tmp_path)})
    out = subprocess.run([*STYXGRID, "--scheduler", grid.sock, "cat", "nodes/index"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.stdout.startswith("by-env ")


def test_outputs_are_regular_files_inside_the_task_folder(grid, cli):
    """The worker reads outputs for the task: a link out of its folder (to a secret,
    or to a stream that never ends) or a FIFO fails the task; nothing hangs."""
    grid.start_worker("w1")
    cases = {"ln -s /etc/shadow s": "output s not sent: it leads outside the task's folder",
             "ln -s /dev/zero s": "output s not sent: it leads outside the task's folder",
             "mkfifo s": "output s not sent: it is not a regular file"}
    for command, reason in cases.items():
        job = cli("submit", "--output", "s", "--", "sh", "-c", command).stdout.strip()
        assert cli("wait", job).returncode == 1
        assert cli("cat", f"jobs/{job}/tasks/0/status").stdout == \
            f"0 failed exit=125 reason={reason}\n"
        assert cli("ls", f"jobs/{job}/outputs").stdout == ""
    out = cli("submit", "--output", "/etc/shadow", "--", "true")
    assert out.returncode == 2 and lines(out) == [
        "styxgrid: submit: output: '/etc/shadow' must be a path in the task's folder, not "
        "an absolute one"]
    out = cli("submit", "-n", "2", "--output", "r.${STYXGRID_TASK}", "--output",
              "r.$STYXGRID_TASK", "--", "true")
    assert out.returncode == 2 and "is stored as outputs/r.$STYXGRID_TASK too" in out.stderr


def test_more_mistakes_are_one_line(grid, cli, tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    assert cli("mkdir", "-p", f"data/{me}").returncode == 0
    assert cli("write", f"data/{me}/f.txt", "x").returncode == 0
    assert cli("ls", "stats").stdout == "stats\n"
    assert cli("ls", f"data/{me}/f.txt").stdout == "f.txt\n"
    out = cli("rm", "-r", "data")
    assert out.returncode == 2 and lines(out) == [
        "styxgrid: rm: data: a folder of the grid itself, not removed (name what is in it)"]
    assert cli("cat", f"data/{me}/f.txt").stdout == "x\n"
    out = cli("mkdir", "-p", f"data/{me}/f.txt/sub")
    assert lines(out) == [f"styxgrid: mkdir: data/{me}/f.txt: not a folder"]
    (tmp_path / "file").write_text("")
    out = cli("get", f"data/{me}/f.txt", "file/")
    assert out.returncode == 2 and lines(out) == ["styxgrid: get: file/: not a folder"]
    out = cli("ls", "-l")
    assert out.returncode == 2 and lines(out) == [
        "styxgrid: ls: unrecognized arguments: -l (see styxgrid ls --help)"]
    out = cli("cat", "x" * 70000)
    assert out.returncode == 2 and len(lines(out)) == 1


async def test_verbose_logs_say_what_changed_as_key_values(proc, short_tmp):
    """-v: a line per job and node change; -vv: per task too; warnings otherwise."""
    sock = os.path.join(short_tmp, "s.sock")
    scheduler = proc(["-v", "scheduler", "--state", os.path.join(short_tmp, "state"),
                      "--listen", sock], r"serving \S+ on")
    worker = proc(["-vv", "worker", "--scheduler", sock, "--name", "w1", "--slots", "1",
                   "--workdir", os.path.join(short_tmp, "work")], r"joined")
    async with open_client(sock) as c:
        job = await submit(c, "cmd true\nsubmit\n")
        await wait(c, job)
    assert scheduler.said(f"INFO: job={job} done", TIMEOUT)
    assert worker.said(f"DEBUG: job={job} task=0 ended status=0", TIMEOUT)
    said = "".join(scheduler.lines)
    assert "INFO: node=w1 joined slots=1" in said
    assert f"INFO: job={job} submitted tasks=1 owner=" in said
    assert "task=0" not in said                      # tasks only at -vv

