"""The e2b Python SDK's synchronous client, unchanged, against Wrenn."""

import io
import uuid
from datetime import datetime, timezone

import pytest
from e2b import (
    CommandExitException,
    FileType,
    FilesystemEventType,
    NotFoundException,
    PtySize,
    Sandbox,
    SandboxQuery,
    SandboxState,
)

from conftest import by_host, eventually


@pytest.fixture
def sbx():
    sandbox = Sandbox.create(timeout=300, metadata={"suite": "py-sync"})
    try:
        yield sandbox
    finally:
        sandbox.kill()


def test_create_takes_template_timeout_metadata_and_envs():
    tag = uuid.uuid4().hex[:8]
    sandbox = Sandbox.create("base", timeout=120, metadata={"suite": "py-sync", "tag": tag}, envs={"FROM_CREATE": "yes"})
    try:
        assert sandbox.commands.run("echo $FROM_CREATE").stdout == "yes\n"
        info = sandbox.get_info()
        assert info.sandbox_id == sandbox.sandbox_id
        assert info.metadata == {"suite": "py-sync", "tag": tag}
        assert info.state == SandboxState.RUNNING
        assert 110 <= (info.end_at - info.started_at).total_seconds() <= 130
        assert sandbox.is_running()
    finally:
        assert sandbox.kill() is True
    assert Sandbox.kill(sandbox.sandbox_id) is False


def test_commands_foreground_background_stdin_envs_cwd_and_exit_codes(sbx: Sandbox):
    result = sbx.commands.run("echo hi; echo warn >&2")
    assert (result.stdout, result.stderr, result.exit_code) == ("hi\n", "warn\n", 0)
    assert sbx.commands.run("echo $GREETING", envs={"GREETING": "hello"}).stdout == "hello\n"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sbx.commands.run("whoami").stdout == "user\n"
    assert sbx.commands.run("whoami", user="root").stdout == "root\n"

    streamed: list[str] = []
    sbx.commands.run("for i in 1 2 3; do echo line-$i; done", on_stdout=streamed.append)
    assert "".join(streamed) == "line-1\nline-2\nline-3\n"

    with pytest.raises(CommandExitException) as failed:
        sbx.commands.run("echo bad >&2; exit 3")
    assert (failed.value.exit_code, failed.value.stderr) == (3, "bad\n")

    sleeper = sbx.commands.run("sleep 600", background=True)
    assert sleeper.pid in [p.pid for p in sbx.commands.list()]
    assert sbx.commands.kill(sleeper.pid) is True
    eventually(lambda: _assert_not_in(sleeper.pid, [p.pid for p in sbx.commands.list()]))

    cat = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(cat.pid, "typed in\n")
    sbx.commands.close_stdin(cat.pid)
    assert cat.wait().stdout == "typed in\n"


def test_files_text_bytes_streams_dirs_and_watch(sbx: Sandbox):
    info = sbx.files.write("/home/user/notes.txt", "line one\n")
    assert info.path == "/home/user/notes.txt"
    assert sbx.files.read("/home/user/notes.txt") == "line one\n"

    blob = bytes((i * 7) % 256 for i in range(256 * 1024))
    sbx.files.write("/home/user/blob.bin", blob)
    assert sbx.files.read("/home/user/blob.bin", format="bytes") == bytes(blob)
    sbx.files.write("/home/user/streamed.bin", io.BytesIO(blob[:1000]))
    assert b"".join(sbx.files.read("/home/user/streamed.bin", format="stream")) == blob[:1000]

    assert sbx.files.make_dir("/home/user/dir") is True
    assert sbx.files.make_dir("/home/user/dir") is False
    moved = sbx.files.rename("/home/user/notes.txt", "/home/user/dir/notes.txt")
    assert moved.path == "/home/user/dir/notes.txt"
    entries = sbx.files.list("/home/user/dir")
    assert [(e.name, e.type) for e in entries] == [("notes.txt", FileType.FILE)]
    assert sbx.files.exists("/home/user/notes.txt") is False
    assert sbx.files.exists("/home/user/dir/notes.txt") is True
    sbx.files.remove("/home/user/blob.bin")
    assert sbx.files.exists("/home/user/blob.bin") is False
    with pytest.raises(NotFoundException):
        sbx.files.read("/home/user/blob.bin")

    watcher = sbx.files.watch_dir("/home/user/dir")
    try:
        sbx.files.write("/home/user/dir/new.txt", "fresh")
        seen: list = []

        def saw_create() -> None:
            seen.extend(watcher.get_new_events())
            assert ("new.txt", FilesystemEventType.CREATE) in [(e.name, e.type) for e in seen]

        eventually(saw_create)
    finally:
        watcher.stop()


def test_pty_runs_an_interactive_shell(sbx: Sandbox):
    terminal = sbx.pty.create(PtySize(rows=24, cols=80))
    sbx.pty.resize(terminal.pid, PtySize(rows=30, cols=100))
    sbx.pty.send_stdin(terminal.pid, b"echo pty-$((6*7)) $(stty size); exit\n")
    output = bytearray()
    terminal.wait(on_pty=output.extend)
    text = output.decode(errors="replace")
    assert "pty-42 30 100" in text


def test_set_timeout_pause_and_connect_keep_processes_and_files(sbx: Sandbox):
    sbx.set_timeout(600)
    info = sbx.get_info()
    assert 590 <= (info.end_at - datetime.now(timezone.utc)).total_seconds() <= 610
    sbx.files.write("/home/user/www/index.html", "served by python3")
    sbx.commands.run("cd /home/user/www && python3 -m http.server 8000 >/dev/null 2>&1", background=True)
    sbx.commands.run(
        'sh -c "i=0; while true; do i=\\$((i+1)); echo \\$i > /home/user/.count; '
        'mv /home/user/.count /home/user/count; sleep 0.2; done"',
        background=True,
    )
    host = sbx.get_host(8000)
    assert host == f"8000-{sbx.sandbox_id}.e2b.app"
    eventually(lambda: _assert_body(by_host(host, "/index.html"), "served by python3"))

    before = int(eventually(lambda: sbx.files.read("/home/user/count")))
    assert sbx.pause() is True
    assert sbx.is_running() is False
    paused = Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED], metadata={"suite": "py-sync"}))
    assert sbx.sandbox_id in [s.sandbox_id for s in paused.next_items()]

    again = Sandbox.connect(sbx.sandbox_id)
    assert again.is_running() is True
    after = int(again.files.read("/home/user/count"))
    assert after >= before
    eventually(lambda: _assert_greater(int(again.files.read("/home/user/count")), after))
    eventually(lambda: _assert_body(by_host(host, "/index.html"), "served by python3"))


def test_list_filters_by_metadata_and_state():
    tag = uuid.uuid4().hex[:8]
    made = [Sandbox.create(timeout=120, metadata={"suite": "py-sync", "tag": tag, "n": str(i)}) for i in range(2)]
    try:
        query = SandboxQuery(metadata={"tag": tag})
        assert sorted(s.sandbox_id for s in Sandbox.list(query=query).next_items()) == sorted(
            s.sandbox_id for s in made
        )
        one = Sandbox.list(query=SandboxQuery(metadata={"tag": tag, "n": "1"})).next_items()
        assert [s.sandbox_id for s in one] == [made[1].sandbox_id]
        made[0].pause()
        running = Sandbox.list(query=SandboxQuery(metadata={"tag": tag}, state=[SandboxState.RUNNING]))
        assert [s.sandbox_id for s in running.next_items()] == [made[1].sandbox_id]
    finally:
        for s in made:
            s.kill()
    assert Sandbox.list(query=SandboxQuery(metadata={"tag": tag})).next_items() == []


def test_snapshots_and_forks_start_from_the_state_and_write_their_own(sbx: Sandbox):
    made: list[Sandbox] = []
    try:
        sbx.files.write("/home/user/state", "prepared\n")
        snapshot = sbx.create_snapshot()
        assert snapshot.snapshot_id in [s.snapshot_id for s in Sandbox.list_snapshots().next_items()]
        from_snapshot = Sandbox.create(snapshot.snapshot_id, timeout=120)
        made.append(from_snapshot)
        assert from_snapshot.files.read("/home/user/state") == "prepared\n"

        forks = sbx.fork(count=2, timeout=120)
        assert len(forks) == 2
        for fork in forks:
            if isinstance(fork, Exception):
                raise fork
            made.append(fork)
            assert fork.files.read("/home/user/state") == "prepared\n"
        first, second = forks
        first.files.write("/home/user/state", "changed in a fork\n")
        assert second.files.read("/home/user/state") == "prepared\n"
        assert sbx.files.read("/home/user/state") == "prepared\n"
        assert sbx.is_running()

        assert Sandbox.delete_snapshot(snapshot.snapshot_id) is True
        assert Sandbox.delete_snapshot(snapshot.snapshot_id) is False
    finally:
        for s in made:
            s.kill()


def test_metrics_report_the_sandbox_sizes(sbx: Sandbox):
    sbx.commands.run("python3 -c 'sum(range(10**6))'")

    def sampled():
        metrics = sbx.get_metrics()
        assert metrics
        return metrics[-1]

    last = eventually(sampled)
    assert last.cpu_count == 1
    assert last.mem_total == 512 * 1024 * 1024
    assert 0 < last.mem_used <= last.mem_total
    assert 0 < last.disk_used <= last.disk_total


def test_another_teams_key_is_refused(sbx: Sandbox, other_team_key: str):
    with pytest.raises(NotFoundException) as refused:
        Sandbox.connect(sbx.sandbox_id, api_key=other_team_key)
    assert sbx.sandbox_id in str(refused.value)
    others = Sandbox.list(api_key=other_team_key).next_items()
    assert sbx.sandbox_id not in [s.sandbox_id for s in others]
    assert Sandbox.kill(sbx.sandbox_id, api_key=other_team_key) is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sbx.sandbox_id, api_key=other_team_key)
    assert sbx.is_running()
    assert sbx.commands.run("echo still mine").stdout == "still mine\n"


def _assert_not_in(item, items) -> None:
    assert item not in items


def _assert_greater(value: int, than: int) -> None:
    assert value > than


def _assert_body(response, text: str) -> None:
    assert response.status_code == 200, response.text
    assert text in response.text
