"""The e2b Python SDK's asyncio client, unchanged, against Wrenn."""

import asyncio
import time
import uuid
from typing import Awaitable, Callable, TypeVar

import pytest
import pytest_asyncio
from e2b import (
    AsyncSandbox,
    CommandExitException,
    FileType,
    FilesystemEvent,
    FilesystemEventType,
    NotFoundException,
    PtySize,
    SandboxQuery,
    SandboxState,
)

from conftest import by_host

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def sbx():
    sandbox = await AsyncSandbox.create(timeout=300, metadata={"suite": "py-async"})
    try:
        yield sandbox
    finally:
        await sandbox.kill()


@pytest.mark.asyncio
async def test_create_takes_template_timeout_metadata_and_envs():
    tag = uuid.uuid4().hex[:8]
    sandbox = await AsyncSandbox.create(
        "base", timeout=90, metadata={"suite": "py-async", "tag": tag}, envs={"FROM_CREATE": "async"}
    )
    try:
        assert (await sandbox.commands.run("echo $FROM_CREATE")).stdout == "async\n"
        info = await sandbox.get_info()
        assert (info.sandbox_id, info.metadata, info.state) == (
            sandbox.sandbox_id,
            {"suite": "py-async", "tag": tag},
            SandboxState.RUNNING,
        )
        assert 80 <= (info.end_at - info.started_at).total_seconds() <= 100
    finally:
        assert await sandbox.kill() is True
    assert await AsyncSandbox.kill(sandbox.sandbox_id) is False


@pytest.mark.asyncio
async def test_commands_run_side_by_side_with_stdin_envs_cwd_and_exit_codes(sbx: AsyncSandbox):
    # Several commands at once on one sandbox: each gets its own output.
    results = await asyncio.gather(*(sbx.commands.run(f"sleep 0.3; echo n{i}") for i in range(5)))
    assert [r.stdout for r in results] == [f"n{i}\n" for i in range(5)]
    run = await sbx.commands.run("echo $A-$(pwd)", envs={"A": "env"}, cwd="/home")
    assert run.stdout == "env-/home\n"

    with pytest.raises(CommandExitException) as failed:
        await sbx.commands.run("echo nope >&2; exit 42")
    assert (failed.value.exit_code, failed.value.stderr) == (42, "nope\n")

    lines: list[str] = []
    sleeper = await sbx.commands.run("echo started; sleep 600", background=True, on_stdout=lines.append)
    await eventually(lambda: _expect(lines == ["started\n"]))
    assert sleeper.pid in [p.pid for p in await sbx.commands.list()]
    assert await sleeper.kill() is True
    await eventually(lambda: _expect_async(sbx.commands.list(), lambda ps: sleeper.pid not in [p.pid for p in ps]))

    reader = await sbx.commands.run("read line; echo got-$line", background=True, stdin=True)
    await sbx.commands.send_stdin(reader.pid, "input\n")
    assert (await reader.wait()).stdout == "got-input\n"


@pytest.mark.asyncio
async def test_files_text_bytes_streams_dirs_and_watch(sbx: AsyncSandbox):
    await sbx.files.write("/home/user/a.txt", "alpha")
    assert await sbx.files.read("/home/user/a.txt") == "alpha"
    payload = uuid.uuid4().bytes * 4096
    await sbx.files.write("/home/user/b.bin", payload)
    assert await sbx.files.read("/home/user/b.bin", format="bytes") == payload
    chunks = [chunk async for chunk in await sbx.files.read("/home/user/b.bin", format="stream")]
    assert b"".join(chunks) == payload

    assert await sbx.files.make_dir("/home/user/tree/leaf") is True
    await sbx.files.rename("/home/user/a.txt", "/home/user/tree/a.txt")
    listed = await sbx.files.list("/home/user/tree")
    assert sorted((e.name, e.type) for e in listed) == [("a.txt", FileType.FILE), ("leaf", FileType.DIR)]
    assert await sbx.files.exists("/home/user/a.txt") is False
    await sbx.files.remove("/home/user/tree")
    assert await sbx.files.exists("/home/user/tree/a.txt") is False
    with pytest.raises(NotFoundException):
        await sbx.files.read("/home/user/tree/a.txt")

    events: list[FilesystemEvent] = []
    await sbx.files.make_dir("/home/user/watched")
    watcher = await sbx.files.watch_dir("/home/user/watched", on_event=events.append)
    try:
        await sbx.files.write("/home/user/watched/x.txt", "x")
        await eventually(
            lambda: _expect(("x.txt", FilesystemEventType.CREATE) in [(e.name, e.type) for e in events])
        )
    finally:
        await watcher.stop()


@pytest.mark.asyncio
async def test_pty_runs_an_interactive_shell(sbx: AsyncSandbox):
    output = bytearray()
    terminal = await sbx.pty.create(PtySize(rows=20, cols=60), on_data=output.extend)
    await sbx.pty.resize(terminal.pid, PtySize(rows=25, cols=90))
    await sbx.pty.send_stdin(terminal.pid, b"echo async-$((6*7)) $(stty size); exit\n")
    await terminal.wait()
    assert "async-42 25 90" in output.decode(errors="replace")


@pytest.mark.asyncio
async def test_set_timeout_pause_connect_list_and_metrics(sbx: AsyncSandbox):
    await sbx.set_timeout(600)
    await sbx.files.write("/home/user/site/index.html", "async page")
    await sbx.commands.run("cd /home/user/site && python3 -m http.server 9000 >/dev/null 2>&1", background=True)
    sleeper = await sbx.commands.run("sleep 3600", background=True)
    host = sbx.get_host(9000)
    await eventually(lambda: _expect_page(host, "async page"))

    metrics = await eventually(lambda: _expect_async(sbx.get_metrics(), bool))
    assert (metrics[-1].cpu_count, metrics[-1].mem_total) == (1, 512 * 1024 * 1024)

    assert await sbx.pause() is True
    assert await sbx.is_running() is False
    paused = AsyncSandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED], metadata={"suite": "py-async"}))
    assert sbx.sandbox_id in [s.sandbox_id for s in await paused.next_items()]

    again = await AsyncSandbox.connect(sbx.sandbox_id)
    assert await again.is_running() is True
    assert await again.files.read("/home/user/site/index.html") == "async page"
    assert sleeper.pid in [p.pid for p in await again.commands.list()]
    await eventually(lambda: _expect_page(host, "async page"))
    running = AsyncSandbox.list(query=SandboxQuery(state=[SandboxState.RUNNING], metadata={"suite": "py-async"}))
    assert sbx.sandbox_id in [s.sandbox_id for s in await running.next_items()]


@pytest.mark.asyncio
async def test_snapshot_and_fork(sbx: AsyncSandbox):
    made: list[AsyncSandbox] = []
    try:
        await sbx.files.write("/home/user/state", "async state\n")
        snapshot = await sbx.create_snapshot()
        from_snapshot = await AsyncSandbox.create(snapshot.snapshot_id, timeout=120)
        made.append(from_snapshot)
        assert await from_snapshot.files.read("/home/user/state") == "async state\n"
        [fork] = await sbx.fork(count=1, timeout=120)
        if isinstance(fork, Exception):
            raise fork
        made.append(fork)
        await fork.files.write("/home/user/state", "fork's own\n")
        assert await from_snapshot.files.read("/home/user/state") == "async state\n"
        assert await sbx.files.read("/home/user/state") == "async state\n"
        assert await AsyncSandbox.delete_snapshot(snapshot.snapshot_id) is True
    finally:
        await asyncio.gather(*(s.kill() for s in made))


@pytest.mark.asyncio
async def test_another_teams_key_is_refused(sbx: AsyncSandbox, other_team_key: str):
    with pytest.raises(NotFoundException):
        await AsyncSandbox.connect(sbx.sandbox_id, api_key=other_team_key)
    others = await AsyncSandbox.list(api_key=other_team_key).next_items()
    assert sbx.sandbox_id not in [s.sandbox_id for s in others]
    assert await AsyncSandbox.kill(sbx.sandbox_id, api_key=other_team_key) is False
    assert await sbx.is_running()


async def _expect(condition: bool) -> None:
    assert condition


async def _expect_async(value: Awaitable[T], check: Callable[[T], object]) -> T:
    result = await value
    assert check(result), result
    return result


async def _expect_page(host: str, text: str) -> None:
    response = await asyncio.to_thread(by_host, host, "/index.html")
    assert response.status_code == 200 and text in response.text, response.text
