"""The run actions of the ``agentrt`` command against a server (``cancel``, ``resume``,
``fork``, ``approve``, ``deny``, ``resolve``, ``runs export``), in real processes:
each next to the same command over the server's store, printing the same, with the
same exit code; the server's refusals are one line.

The server takes up no run by itself (``--no-worker``), so a run a killed process
left stays where it was until a command resumes it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentrt.state import Store
from tests.server.conftest import serving
from tests.server.harness import Api, Served, agentrt, shape
from tests.server.run_fixtures import (
    PAYER,
    charge_rules,
    events_of,
    in_tool_call,
    script,
    stranded,
    submitted,
    until,
    yaml,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that executes the runs it is asked to, and takes up none by itself."""
    with serving(tmp_path_factory, "--no-worker") as server:
        yield server


@pytest.fixture
async def admin(served: Served, tenant: str, http: aiohttp.ClientSession) -> Api:
    """An admin key of the test's tenant, its resources applied."""
    api = Api(served, await served.key(tenant, "admin", name="admin"), http)
    served.model.set_rules(charge_rules() + script())
    assert (await api.apply(yaml(served.model.url) + PAYER)).status == 200
    return api


async def _waiting(api: Api, count: int) -> list[str]:
    """``count`` runs of ``bot`` waiting for approval of their step 2 (an ``add`` call)."""
    runs = [await submitted(api, "add them") for _ in range(count)]
    for run_id in runs:
        await until(api, run_id, "waiting_approval")
    return runs


_USAGE = re.compile(r"tokens \d+ \(in \d+ / out \d+\) · tool calls \d+ · \$[\d.]+")


def _head(text: str) -> str:
    """The result's first line: status, steps, tokens, tool calls, cost."""
    [line] = [line for line in text.splitlines() if " · tokens " in line]
    return line


def _but_usage(text: str) -> str:
    """The output (its shape) with the result's usage left out.

    A command over a store reports the usage its own execution counted: a fork's
    shared steps, a denied call or one left unknown are counted there as they are
    not in the run's row; a server reports the row (as ``runs list`` does).
    """
    head = _head(text)
    return shape(text.replace(head, _USAGE.sub("USAGE", head)))


def _row_usage(view: dict[str, Any]) -> str:
    """The usage of a run's row, as a result's first line says it."""
    u = view["run"]["usage"]
    return (
        f"tokens {u['input_tokens'] + u['output_tokens']} (in {u['input_tokens']} / "
        f"out {u['output_tokens']}) · tool calls {u['tool_calls']} · ${u['cost_usd']:.4f}"
    )


async def test_approve_and_fork_print_what_they_print_over_the_store(
    served: Served, admin: Api
) -> None:
    mine, theirs = await _waiting(admin, 2)
    remote = await agentrt("approve", mine, "2", server=served, key=admin.key)
    local = await agentrt("approve", theirs, "2", store=served.store_url)
    assert remote[0] == local[0] == 0 and remote[2] == local[2] == "", (remote, local)
    assert remote[1].splitlines()[0] == f"{mine} resumed"
    assert "  step   2  act   add(a=2, b=3) → 5" in remote[1]
    assert remote[1].endswith("output: got 5\n")
    assert shape(remote[1]) == shape(local[1])
    decided = events_of((await admin.call("GET", f"/v1/runs/{mine}")).body, "approval.decided")
    assert [e["data"] for e in decided] == [{"approved": True, "by": "key:admin"}]

    # A fork from step 1 does step 2 again: it waits for its approval (exit 3).
    fork = ("fork", mine, "--from-step", "1", "--set", "instructions=be terse")
    remote = await agentrt(*fork, server=served, key=admin.key)
    local = await agentrt(*fork, store=served.store_url)
    assert remote[0] == local[0] == 3 and remote[2] == local[2] == "", (remote, local)
    lines = remote[1].splitlines()
    forked = lines[0].split()[0]
    assert lines[:2] == [f"{forked} forked from {mine} at step 1", f"{forked} started"]
    assert lines[2].startswith(f"{forked} waiting_approval: step 2 (add) needs approval")
    assert _but_usage(remote[1]) == _but_usage(local[1])
    view = (await admin.call("GET", f"/v1/runs/{forked}")).body
    row = view["run"]
    assert (row["parent_run"], row["fork_step"], row["principal"]) == (mine, 1, "key:admin")
    assert _head(remote[1]) == f"waiting_approval in 2 steps · {_row_usage(view)}"


async def test_deny_continues_the_run_with_the_denial_as_over_the_store(
    served: Served, admin: Api
) -> None:
    mine, theirs = await _waiting(admin, 2)
    remote = await agentrt("deny", mine, "2", "--reason", "not today", server=served, key=admin.key)
    local = await agentrt("deny", theirs, "2", "--reason", "not today", store=served.store_url)
    assert remote[0] == local[0] == 0 and remote[2] == local[2] == "", (remote, local)
    denial = "denied by key:admin: not today"
    assert remote[1].splitlines()[:2] == [
        f"{mine} resumed",
        f"  step   2  act   add(a=2, b=3) → failed {denial}  reconciled by denied",
    ]
    assert remote[1].endswith(f"output: got {denial}\n")

    view = (await admin.call("GET", f"/v1/runs/{mine}")).body
    assert _head(remote[1]) == f"succeeded in 3 steps · {_row_usage(view)}"

    # The same lines but for who denied (the key; locally, the user) and so the tokens.
    def same(text: str) -> str:
        return re.sub(r"tokens \d+", "tokens N", re.sub(r"denied( by \S+)?: ", "denied: ", text))

    assert same(_but_usage(remote[1])) == same(_but_usage(local[1]))


async def test_cancel_stops_a_running_run_and_reports_an_ended_one_as_over_the_store(
    served: Served, admin: Api
) -> None:
    mine, theirs = [await submitted(admin, "nap now") for _ in range(2)]
    for run_id in (mine, theirs):
        await in_tool_call(admin, run_id, "nap")
    remote = await agentrt("cancel", mine, server=served, key=admin.key)
    local = await agentrt("cancel", theirs, store=served.store_url)
    assert remote == (0, f"{mine} cancelled\n", "") and local == (0, f"{theirs} cancelled\n", "")
    view = (await admin.call("GET", f"/v1/runs/{mine}")).body
    [end] = events_of(view, "run.finished")
    assert (end["data"]["status"], end["data"]["by"]) == ("cancelled", "key:admin")
    # Once more, and a run that ended otherwise: said as it is, exit 0, as locally.
    again = await agentrt("cancel", mine, server=served, key=admin.key)
    assert again == (0, f"{mine} cancelled\n", "")
    done = await submitted(admin, "hello", target="echo", wait=True)
    remote = await agentrt("cancel", done, server=served, key=admin.key)
    local = await agentrt("cancel", done, store=served.store_url)
    assert remote == local == (0, f"{done} already succeeded\n", "")
    shown = await agentrt("--json", "cancel", done, server=served, key=admin.key)
    assert json.loads(shown[1])["status"] == "succeeded"


async def test_an_exported_run_is_an_archive_that_imports_and_replays(
    served: Served, admin: Api, tmp_path: Path
) -> None:
    [run_id] = await _waiting(admin, 1)
    await admin.call("POST", f"/v1/runs/{run_id}/approve", json={"step": 2, "wait": True})
    out = tmp_path / "run.json"
    remote = await agentrt("runs", "export", run_id, "-o", str(out), server=served, key=admin.key)
    local = await agentrt("runs", "export", run_id, store=served.store_url)
    assert remote == (0, "", "") and local[0] == 0
    assert out.read_text() == local[1]  # the same archive, byte for byte
    printed = await agentrt("runs", "export", run_id, server=served, key=admin.key)
    assert printed == local
    # Imported into another store, it replays to the same answer with no model at all.
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code, said, err = await agentrt("runs", "import", str(out), store=elsewhere)
    assert (code, err) == (0, "") and said.startswith("imported as run_"), said
    copy = said.split()[2]
    replayed = await agentrt("replay", copy, store=elsewhere)
    assert replayed[0] == 0 and replayed[1].endswith("output: got 5\n"), replayed
    bad = await agentrt(
        "runs", "export", run_id, "-o", str(tmp_path / "no" / "dir.json"),
        server=served, key=admin.key,
    )  # fmt: skip
    assert (
        bad[0] == 2 and bad[2].startswith("error: cannot write") and len(bad[2].splitlines()) == 1
    )


async def test_resume_and_resolve_a_run_a_killed_process_left_as_over_the_store(
    served: Served, admin: Api, tenant: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    mine, theirs = await stranded(served.store_url, tenant, effects, 2)
    env = {"AGENTRT_TEST_EFFECTS": str(effects)}
    # Resumed, the call that may have happened is not made again: the run waits (exit 3).
    remote = await agentrt("resume", mine, server=served, key=admin.key, env=env)
    local = await agentrt("resume", theirs, store=served.store_url, env=env)
    assert remote[0] == local[0] == 3 and remote[2] == local[2] == "", (remote, local)
    assert remote[1].splitlines()[0] == f"{mine} resumed"
    assert f"agentrt resolve {mine} 2" in remote[1]
    assert _but_usage(remote[1]) == _but_usage(local[1])
    view = (await admin.call("GET", f"/v1/runs/{mine}")).body
    assert _head(remote[1]) == f"waiting in 2 steps · {_row_usage(view)}"
    # Resolved as having happened: the run goes on with what it returned.
    resolve = ("resolve", "2", "--output", "charged 7")
    remote = await agentrt(resolve[0], mine, *resolve[1:], server=served, key=admin.key, env=env)
    local = await agentrt(resolve[0], theirs, *resolve[1:], store=served.store_url, env=env)
    assert remote[0] == local[0] == 0 and remote[2] == local[2] == "", (remote, local)
    assert remote[1].splitlines()[0] == f"{mine} resumed"
    assert remote[1].endswith("output: charged 7\n")
    assert shape(remote[1]) == shape(local[1])
    view = (await admin.call("GET", f"/v1/runs/{mine}")).body
    starts = [e["data"].get("by") for e in events_of(view, "run.started")]
    assert starts[1] == "key:admin"  # the resume names the key that asked
    assert [e["data"]["by"] for e in events_of(view, "tool.decision")] == ["key:admin"]
    assert effects.read_text().count("\tcharge\t") == 2, "each charge once, never again"


# Each action with arguments that name a run (RUN) and would do it.
ACTIONS = [
    ("cancel", "RUN"),
    ("resume", "RUN"),
    ("fork", "RUN", "--from-step", "0"),
    ("approve", "RUN", "2"),
    ("deny", "RUN", "2", "--reason", "no"),
    ("resolve", "RUN", "2", "--rerun"),
    ("runs", "export", "RUN"),
]


async def test_a_refused_action_is_one_line_with_the_exit_code_of_the_store_command(
    served: Served, admin: Api, tenant: str
) -> None:
    async def both(args: tuple[str, ...]) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        named = [a.replace("RUN", "run_nope") for a in args]
        return await asyncio.gather(
            agentrt(*named, server=served, key=admin.key), agentrt(*named, store=served.store_url)
        )

    for args, (remote, local) in zip(ACTIONS, [await both(a) for a in ACTIONS], strict=True):
        assert remote[0] == local[0] == 2 and remote[1] == local[1] == "", (args, remote, local)
        assert remote[2] == "error: no run with this id for this key\n", args
        assert len(local[2].splitlines()) == 1, (args, local)
    # A role that may not: one line saying which role it needs; nothing changed.
    user = Api(served, await served.key(tenant, "user", name="someone"), admin.http)
    [waiting] = await _waiting(user, 1)
    before = (await admin.call("GET", f"/v1/runs/{waiting}")).body
    viewer = await served.key(tenant, "viewer", name="watcher")
    other = await served.key(tenant, "user", name="another")
    refused = await asyncio.gather(
        agentrt("cancel", waiting, server=served, key=viewer),
        agentrt("approve", waiting, "2", server=served, key=user.key),  # not its own decision
        agentrt("cancel", waiting, server=served, key=other),  # another principal's run
    )
    assert refused == [
        (2, "", "error: this needs the user role; the key 'watcher' is viewer\n"),
        (2, "", "error: this needs the operator role; the key 'someone' is user\n"),
        (2, "", "error: no run with this id for this key\n"),
    ]
    assert (await admin.call("GET", f"/v1/runs/{waiting}")).body == before
    # A state the action does not apply to: the server's reason, in one line.
    code, out, err = await agentrt("approve", waiting, "1", server=served, key=admin.key)
    assert (code, out) == (2, "") and err.startswith(f"error: step 1 of run {waiting} does not")
    # And what has no form against a server says so, in one line.
    for args in (("replay", "run_1"), ("runs", "import", "run.json"), ("gc",)):
        code, out, err = await agentrt(*args, server=served, key=admin.key)
        assert (code, out) == (2, "") and len(err.splitlines()) == 1, (args, err)
        assert "does not work against a server; run it where the store is" in err
    async with Store.from_url(served.store_url) as store:
        assert await store.get_run("run_nope") is None


async def test_run_against_a_server_applies_its_double_texting_policy(
    served: Served, admin: Api
) -> None:
    reply = await admin.call(
        "POST", "/v1/queries", json={"target": "bot", "input": "nap now", "session": "chat"}
    )
    napping = reply.body["run"]["id"]
    await in_tool_call(admin, napping, "nap")
    ask = ("run", "bot", "hi", "--session", "chat", "--double-texting")
    code, out, err = await agentrt(*ask, "reject", server=served, key=admin.key)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert err.startswith("error: session 'chat' has an unfinished turn")
    # Interrupting it cancels the turn that naps; the new turn answers.
    code, out, err = await agentrt(*ask, "interrupt", "-q", server=served, key=admin.key)
    assert (code, out, err) == (0, "ok\n", "")
    view = (await admin.call("GET", f"/v1/runs/{napping}")).body["run"]
    assert (view["status"], view["cancel_cause"]) == ("cancelled", "interrupt")
