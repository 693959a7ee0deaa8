"""``agentrt.client`` acting on runs and sessions against a real ``agentrt serve``:
cancel, resume, fork, approve, deny, resolve, export; sessions listed, read and
deleted; each refusal an ``ApiError`` with the server's status and code.

The server takes up no run by itself (``--no-worker``): a queued run, or one a
killed process left, stays where it is until the client resumes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentrt.client import AgentrtClient, ApiError
from agentrt.engine import Runtime
from tests.server.conftest import serving
from tests.server.harness import Api, Served
from tests.server.run_fixtures import (
    PAYER,
    charge_rules,
    in_tool_call,
    script,
    stranded,
    until,
)
from tests.server.run_fixtures import yaml as resources


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that executes the runs it is asked to, and takes up none by itself."""
    with serving(tmp_path_factory, "--no-worker") as server:
        yield server


@pytest.fixture
async def client(served: Served, admin: Api) -> AgentrtClient:
    """A client with the tenant's admin key, the tenant's resources applied."""
    served.model.set_rules(charge_rules() + script())
    assert (await admin.apply(resources(served.model.url) + PAYER)).status == 200
    assert admin.key is not None
    return AgentrtClient(served.base, admin.key)


async def _waiting(client: AgentrtClient, admin: Api) -> str:
    """A run of ``bot`` waiting for approval of its ``add`` call (step 2)."""
    run = (await client.submit("bot", "add them")).run
    await until(admin, run.id, "waiting_approval")
    return run.id


async def test_approve_and_deny_continue_the_run_and_name_who_decided(
    client: AgentrtClient, admin: Api
) -> None:
    async with client:
        approved_run = await _waiting(client, admin)
        approved = await client.approve(approved_run, 2, wait=True)
        assert approved.outcome is not None and approved.run.id == approved_run
        assert (approved.outcome.status, approved.outcome.output) == ("succeeded", "got 5")
        log = (await client.get_run(approved_run)).events
        assert [e.data for e in log if e.type == "approval.decided"] == [
            {"approved": True, "by": "key:admin"}
        ]
        # Not waited for: answered once the run goes on, then it ends by itself.
        denied_run = await _waiting(client, admin)
        denied = await client.deny(denied_run, 2, "not today")
        assert denied.outcome is None and denied.run.status not in ("waiting_approval",)
        outcome = await client.wait(denied_run)
        assert (outcome.status, outcome.output) == (
            "succeeded",
            "got denied by key:admin: not today",
        )
        # Deciding what waits for nothing is a conflict, and writes nothing.
        with pytest.raises(ApiError) as nothing:
            await client.approve(denied_run, 2)
        assert (nothing.value.status, nothing.value.code) == (409, "conflict")
        assert "not waiting for approval" in nothing.value.message


async def test_cancel_stops_a_running_run_and_refusals_say_why(
    served: Served, client: AgentrtClient, admin: Api, tenant: str
) -> None:
    async with client:
        napping = (await client.submit("bot", "nap now")).run.id
        await in_tool_call(admin, napping, "nap")
        assert admin.key is not None
        viewer = await served.key(tenant, "viewer", name="watcher")
        async with AgentrtClient(served.base, viewer) as watcher:
            with pytest.raises(ApiError) as low:
                await watcher.cancel_run(napping)
            assert (low.value.status, low.value.code) == (403, "forbidden")
            assert "needs the user role" in low.value.message
        cancelled = await client.cancel_run(napping)
        assert (cancelled.id, cancelled.status, cancelled.finished) == (napping, "cancelled", True)
        assert (cancelled.cancel_requested, cancelled.cancel_by) == (True, "key:admin")
        with pytest.raises(ApiError) as again:
            await client.cancel_run(napping)
        assert again.value.status == 409 and "already ended cancelled" in again.value.message
        for act in (
            client.cancel_run("run_nope"), client.resume_run("run_nope"),
            client.fork_run("run_nope", 0), client.approve("run_nope", 2),
            client.deny("run_nope", 2, "no"), client.resolve("run_nope", 2, "rerun"),
            client.export_run("run_nope"),
        ):  # fmt: skip
            with pytest.raises(ApiError) as unknown:
                await act
            assert (unknown.value.status, unknown.value.code) == (404, "not_found")
            assert "run_nope" not in unknown.value.message


async def test_a_fork_is_a_new_run_of_its_forker_from_the_step_given(
    client: AgentrtClient, admin: Api
) -> None:
    async with client:
        origin = await _waiting(client, admin)
        await client.approve(origin, 2, wait=True)
        forked = await client.fork_run(origin, 1, instructions="be terse", wait=True)
        run = forked.run
        assert (run.parent_run, run.fork_step, run.principal) == (origin, 1, "key:admin")
        # It shares step 1 (the model's call of `add`): its step 2 waits for approval again.
        assert forked.outcome is not None and forked.outcome.status == "waiting_approval"
        detail = await client.get_run(run.id)
        assert detail.events[0].data["spec"]["agent_spec"]["instructions"] == "be terse"
        background = await client.fork_run(origin, 0)
        assert background.outcome is None and background.run.fork_step == 0
        with pytest.raises(ApiError) as past:
            await client.fork_run(origin, 9)
        assert past.value.status == 400 and "between 0 and 3" in past.value.message


async def test_an_exported_run_imports_into_another_store_and_replays(
    client: AgentrtClient, admin: Api, tmp_path: Path
) -> None:
    async with client:
        run_id = await _waiting(client, admin)
        await client.approve(run_id, 2, wait=True)
        archive = await client.export_run(run_id)
        detail = await client.get_run(run_id)
    assert (archive.format, archive.run_id, archive.agent) == ("agentrt.run/v1", run_id, "bot")
    assert (archive.status, archive.principal) == ("succeeded", "key:admin")
    assert archive.events == detail.events
    async with Runtime(f"sqlite:///{tmp_path / 'elsewhere.db'}") as elsewhere:
        copy = await elsewhere.import_run(archive.to_dict())
        replayed = await elsewhere.replay(copy.id)
    assert (copy.status, replayed.status, replayed.output) == ("succeeded", "succeeded", "got 5")


async def test_resume_continues_a_queued_run_and_resolve_decides_an_unknown_step(
    served: Served, client: AgentrtClient, tenant: str, tmp_path: Path
) -> None:
    async with Runtime(served.store_url, resume_interrupted=False) as rt:
        queued = await rt.submit("echo", "hello", namespace=tenant, start=False)
    effects = tmp_path / "effects.txt"
    [left] = await stranded(served.store_url, tenant, effects, 1)
    async with client:
        assert (await client.get_run(queued.id)).run.status == "queued", "nobody took it up"
        resumed = await client.resume_run(queued.id, wait=True)
        assert resumed.outcome is not None and resumed.outcome.output == "ok"
        with pytest.raises(ApiError) as ended:
            await client.resume_run(queued.id)
        assert ended.value.status == 409 and "already succeeded" in ended.value.message
        # The call a killed process was making may have happened: resumed, it waits.
        waits = await client.resume_run(left, wait=True)
        assert waits.outcome is not None and waits.outcome.status == "waiting"
        with pytest.raises(ApiError) as incomplete:
            await client.resolve(left, 2, "output")
        assert incomplete.value.status == 422 and incomplete.value.param == "output"
        decided = await client.resolve(left, 2, "output", output="charged 7", wait=True)
        assert decided.outcome is not None
        assert (decided.outcome.status, decided.outcome.output) == ("succeeded", "charged 7")
        log = (await client.get_run(left)).events
    assert [e.data for e in log if e.type == "tool.decision"] == [
        {"action": "output", "output": "charged 7", "by": "key:admin"}
    ]
    assert effects.read_text().count("\tcharge\t") == 1, "the charge was not made again"


async def test_sessions_are_listed_in_pages_read_with_their_turns_and_deleted(
    client: AgentrtClient, admin: Api, tenant: str
) -> None:
    async with client:
        first = await client.submit("echo", "hi", session="chat", wait=True)
        second = await client.submit("echo", "again", session="chat", wait=True)
        await client.submit("echo", "elsewhere", session="other", wait=True)
        page = await client.list_sessions()
        assert [s.id for s in page.items] == ["other", "chat"] and page.next_cursor is None
        chat = page.items[1]
        assert (chat.state, chat.turn_count, chat.namespace) == ("idle", 2, tenant)
        one = await client.list_sessions(limit=1)
        assert [s.id for s in one.items] == ["other"] and one.next_cursor is not None
        rest = await client.list_sessions(limit=1, cursor=one.next_cursor)
        assert [s.id for s in rest.items] == ["chat"]
        detail = await client.get_session("chat")
        assert detail.session == chat
        assert [(t.turn, t.status, t.output, t.in_history) for t in detail.turns] == [
            (0, "succeeded", "ok", True), (1, "succeeded", "ok", True),
        ]  # fmt: skip
        assert [t.run.id for t in detail.turns] == [first.run.id, second.run.id]
        assert detail.turns[0].run.session == "chat"  # the tenant's id, not the store's
        # A session with a turn that has not ended is not deleted.
        napping = await client.submit("bot", "nap now", session="busy")
        await in_tool_call(admin, napping.run.id, "nap")
        with pytest.raises(ApiError) as busy:
            await client.delete_session("busy")
        assert (busy.value.status, busy.value.code) == (409, "session_busy")
        await client.cancel_run(napping.run.id)
        gone = await client.delete_session("chat")
        assert (gone.session, set(gone.runs)) == ("chat", {first.run.id, second.run.id})
        for missing in ("chat", "no/such", "x?y"):
            with pytest.raises(ApiError) as nothing:
                await client.get_session(missing)
            assert nothing.value.status == 404, missing
        with pytest.raises(ApiError) as run_gone:
            await client.get_run(first.run.id)
        assert run_gone.value.status == 404
