"""``agentrt.client`` against a real ``agentrt serve`` over HTTP: resources, queries,
runs, errors in their one shape, and a run's live stream followed across a cut."""

from __future__ import annotations

import secrets

import pytest

from agentrt.client import AgentrtClient, ApiError, ModelDelta, RunEvent
from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.cutter import Cutter
from tests.server.harness import Api, Served

ANSWER = "two and three make five, as every child knows by heart"


@pytest.fixture
async def client(served: Served, admin: Api) -> AgentrtClient:
    assert admin.key is not None
    return AgentrtClient(served.base + "/v1/", admin.key)


async def test_resources_are_applied_read_listed_and_deleted_by_generation(
    served: Served, client: AgentrtClient, tenant: str
) -> None:
    async with client:
        applied = await client.apply(agent_yaml(served.model.url))
        assert [(r.kind, r.name, r.namespace, r.generation) for r in applied] == [
            ("Model", "m", tenant, 1), ("Agent", "bot", tenant, 1),
        ]  # fmt: skip
        # Plain data is applied as well as YAML; a change is a new generation.
        body = dict(applied[1].body)
        body["spec"] = {**body["spec"], "instructions": "be briefer"}
        again = await client.apply([body])
        assert [(r.name, r.generation) for r in again] == [("bot", 2)]
        got = await client.get_resource("Agent", "bot")
        assert got.generation == 2 and got.body["spec"]["instructions"] == "be briefer"
        assert [(r.kind, r.name) for r in await client.list_resources()] == [
            ("Agent", "bot"), ("Model", "m"),
        ]  # fmt: skip
        assert [r.name for r in await client.list_resources("Model")] == ["m"]
        with pytest.raises(ApiError) as stale:
            await client.delete_resource("Agent", "bot", if_match=1)
        assert (stale.value.status, stale.value.code) == (412, "precondition_failed")
        await client.delete_resource("Agent", "bot", if_match=2)
        with pytest.raises(ApiError) as gone:
            await client.get_resource("Agent", "bot")
        assert (gone.value.status, gone.value.code) == (404, "not_found")


async def test_a_refusal_carries_its_status_code_message_and_issues(
    served: Served, client: AgentrtClient
) -> None:
    bad = agent_yaml(served.model.url).replace("instructions: be brief", "instructoins: x")
    async with client:
        with pytest.raises(ApiError) as invalid:
            await client.apply(bad)
        assert (invalid.value.status, invalid.value.code) == (422, "invalid")
        [issue] = invalid.value.issues
        assert issue["resource"] == "Agent/bot" and "instructoins" in issue["field"]
        assert issue["document"] == "document 2" and issue["fix"]
    async with AgentrtClient(served.base, "agrt_not_a_key") as stranger:
        with pytest.raises(ApiError) as refused:
            await stranger.list_runs()
        assert refused.value.status == 401
    # A server that does not answer is the same error, status 0.
    async with AgentrtClient("http://127.0.0.1:9", "agrt_x") as nobody:
        with pytest.raises(ApiError) as unreachable:
            await nobody.list_runs()
        assert (unreachable.value.status, unreachable.value.code) == (0, "unreachable")


async def test_queries_are_submitted_waited_for_and_read(
    served: Served, client: AgentrtClient, tenant: str
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    async with client:
        await client.apply(agent_yaml(served.model.url, tools=True))
        outcome = await client.run("bot", "2+3?", session="s1")
        assert (outcome.status, outcome.output, outcome.ok) == ("succeeded", ANSWER, True)
        assert outcome.usage.tool_calls == 1 and outcome.usage.total_tokens > 0
        detail = await client.get_run(outcome.run_id)
        assert detail.run.namespace == tenant and detail.run.session == "s1"
        assert detail.output == ANSWER and detail.outcome() == outcome
        assert [e.seq for e in detail.events] == list(range(1, detail.last_seq + 1))
        assert detail.events[-1].type == "run.finished"
        # The same key never starts a second run.
        key = secrets.token_hex(4)
        first = await client.submit("bot", "again", idempotency_key=key)
        second = await client.submit("bot", "again", idempotency_key=key, wait=True)
        assert second.run.id == first.run.id and second.outcome is not None
        runs = await client.list_runs()
        assert [r.id for r in runs] == [first.run.id, outcome.run_id]  # newest first
        assert [r.id for r in await client.list_runs(session="s1")] == [outcome.run_id]
        assert (await client.list_runs(status=["failed"])).items == ()
        page = await client.list_runs(limit=1, target="bot")
        assert [r.id for r in page] == [first.run.id] and page.next_cursor is not None
        rest = await client.list_runs(limit=1, target="bot", cursor=page.next_cursor)
        assert [r.id for r in rest] == [outcome.run_id] and rest.next_cursor is None
        assert len(await client.list_runs(created_before=detail.run.created_at)) == 0
        held = await client.submit("bot", "2+3?", budgets={"max_tool_calls": 0}, wait=True)
        assert held.run.status == "budget_exhausted"
        # A run waited for while it works: followed on its stream to its end.
        served.model.inject_delay(0.5)
        later = await client.submit("bot", "slowly")
        assert later.outcome is None and not later.run.finished
        waited = await client.wait(later.run.id)
        assert (waited.run_id, waited.status, waited.output) == (later.run.id, "succeeded", ANSWER)
        with pytest.raises(ApiError) as missing:
            await client.submit("nobody", "hi")
        assert missing.value.status == 404


async def test_a_runs_stream_is_followed_across_a_cut_connection(
    served: Served, admin: Api, client: AgentrtClient
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    async with client:
        await client.apply(agent_yaml(served.model.url, tools=True))
        done = await client.run("bot", "2+3?")
        log = (await client.get_run(done.run_id)).events
    assert len(log) > 4
    # The relay cuts the first connection in the middle of the third event.
    async with Cutter(served.base, b"id: 3\n") as cutter:
        async with AgentrtClient(cutter.url, admin.key) as relayed:
            seen = [e async for e in relayed.events(done.run_id)]
    assert seen == list(log)  # every event once, in order, the cut one included
    assert len(cutter.requests) == 2
    assert b"last-event-id: 0" in cutter.requests[0].lower()
    assert b"last-event-id: 2" in cutter.requests[1].lower()
    # After the last event of an ended run there is nothing more: the stream ends at once.
    async with AgentrtClient(served.base, admin.key, reconnects=0) as direct:
        assert [e async for e in direct.events(done.run_id, after=log[-1].seq)] == []
        assert [e.seq async for e in direct.events(done.run_id, after=log[-2].seq)] == [log[-1].seq]


async def test_a_live_stream_yields_the_models_reply_piece_by_piece(
    served: Served, client: AgentrtClient
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    async with client:
        await client.apply(agent_yaml(served.model.url, tools=True))
        served.model.inject_delay(0.5)  # the first step: the stream is open before the next
        served.model.chunk_delay_s = 0.01
        try:
            query = await client.submit("bot", f"2+3? {secrets.token_hex(3)}")
            seen = [e async for e in client.events(query.run.id)]
        finally:
            served.model.chunk_delay_s = 0.0
        log = (await client.get_run(query.run.id)).events
    durable = [e for e in seen if isinstance(e, RunEvent)]
    pieces = [e for e in seen if isinstance(e, ModelDelta)]
    assert durable == list(log)
    result = next(e for e in durable if e.type == "model.result" and e.data.get("content"))
    mine = [p for p in pieces if p.step == result.step]
    assert len(mine) > 3 and "".join(p.text for p in mine) == ANSWER
    assert {(p.run, p.attempt, p.type) for p in mine} == {(query.run.id, 1, "model.delta")}
    assert seen.index(mine[-1]) < seen.index(result)
