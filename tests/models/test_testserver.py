"""ModelTestServer: process mode, thread mode, endpoints and controls."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from agentrt.models import ModelRequest, ModelTestServer, OpenAIClient
from agentrt.models.testserver import load_rules
from agentrt.spec.resources import ScriptedRule

RULES_YAML = """\
- match: "^weather"
  steps:
    - tool_calls:
        - name: get_weather
          arguments: {city: "{input}"}
    - content: "It is {last_tool_result}"
"""


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrt.models.testserver",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_process_mode_serves_until_sigterm(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML, encoding="utf-8")
    proc = await _spawn("--port", "0", "--rules", str(rules), "--latency", "0.01")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
        assert line.startswith("listening http://127.0.0.1:")
        assert line.endswith("/v1\n")
        url = line.split()[1]

        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": [{"role": "user", "content": "weather in Oslo"}]}
            async with session.post(f"{url}/chat/completions", json=body) as resp:
                assert resp.status == 200
                data = orjson.loads(await resp.read())
            async with session.get(url.removesuffix("/v1") + "/healthz") as resp:
                assert resp.status == 200
        [choice] = data["choices"]
        assert choice["finish_reason"] == "tool_calls"
        [call] = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert orjson.loads(call["function"]["arguments"]) == {"city": "weather in Oslo"}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM if sys.platform != "win32" else signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    if sys.platform != "win32":
        assert proc.returncode == 0, err.decode()
    assert out == b""  # the listening line was the only output
    assert b"Warning" not in err, err.decode()


async def test_process_mode_rejects_an_invalid_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- match: '('\n  steps: []\n", encoding="utf-8")
    proc = await _spawn("--rules", str(rules))
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert out == b""
    assert b"rule 0" in err and b"match" in err


def test_load_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    [rule] = load_rules(path)
    assert rule.match == "^weather" and len(rule.steps) == 2
    path.write_text("", encoding="utf-8")
    assert load_rules(path) == []
    path.write_text("match: x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="list of rules"):
        load_rules(path)


def test_thread_mode_serves_synchronous_callers() -> None:
    server = ModelTestServer()
    url = server.start_in_thread()
    try:
        assert server.start_in_thread() == url

        async def call() -> str | None:
            async with OpenAIClient(base_url=url, model="m") as client:
                response = await client.complete(
                    ModelRequest(model="m", messages=[{"role": "user", "content": "ping"}])
                )
            return response.content

        server.inject(503)
        assert asyncio.run(call()) == "You said: ping"
        assert [r["_status"] for r in server.requests] == [503, 200]
    finally:
        server.stop_thread()
    server.stop_thread()
    with pytest.raises(RuntimeError):
        _ = server.url


async def test_endpoints_and_response_shape() -> None:
    async with ModelTestServer() as server, aiohttp.ClientSession() as session:
        root = server.url.removesuffix("/v1")
        async with session.get(root + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(server.url + "/models") as resp:
            models = orjson.loads(await resp.read())
        assert models["object"] == "list" and models["data"][0]["id"] == "scripted"

        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(server.url + "/chat/completions", json=body) as resp:
            data = orjson.loads(await resp.read())
        assert data["object"] == "chat.completion"
        assert data["id"].startswith("chatcmpl-")
        assert isinstance(data["created"], int)
        assert data["model"] == "x"
        assert data["choices"][0]["message"] == {"role": "assistant", "content": "You said: hi"}
        assert data["choices"][0]["finish_reason"] == "stop"
        assert data["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}

        async with session.post(server.url + "/chat/completions", data=b"{not json") as resp:
            assert resp.status == 400
            assert "messages" in orjson.loads(await resp.read())["error"]["message"]
        assert server.requests[-1]["_status"] == 400
        assert server.completions_served == 1


async def test_controls_while_running() -> None:
    async with ModelTestServer() as server, aiohttp.ClientSession() as session:

        async def post() -> tuple[int, dict[str, str], bytes]:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            async with session.post(server.url + "/chat/completions", json=body) as resp:
                return resp.status, dict(resp.headers), await resp.read()

        server.set_rules([ScriptedRule.model_validate({"steps": [{"content": "rule: {input}"}]})])
        server.inject(429, retry_after=2)
        server.inject(500, count=2)
        statuses = []
        for _ in range(4):
            status, headers, raw = await post()
            statuses.append(status)
            if status == 429:
                assert headers["Retry-After"] == "2"
        assert statuses == [429, 500, 500, 200]
        assert orjson.loads(raw)["choices"][0]["message"]["content"] == "rule: hi"
        assert [r.get("_injected", False) for r in server.requests] == [True] * 3 + [False]

        server.inject(503, count=5)
        server.clear_injections()
        server.latency_s = 0.01
        server.inject_delay(0.01)
        assert (await post())[0] == 200

        server.reset_log()
        assert server.requests == [] and server.completions_served == 0


async def test_stop_cuts_injected_delays_short() -> None:
    server = ModelTestServer()
    await server.start()
    server.inject_delay(600)
    async with aiohttp.ClientSession() as session:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        pending = asyncio.ensure_future(session.post(server.url + "/chat/completions", json=body))
        for _ in range(3000):  # bounded: wait for the request to reach the handler
            if server.requests:
                break
            await asyncio.sleep(0.01)
        assert server.requests
        await server.stop()
        with pytest.raises(aiohttp.ClientError):
            resp = await pending
            resp.release()
    await server.stop()


async def test_injected_replies_change_finish_reason_and_usage() -> None:
    rule = ScriptedRule.model_validate({"steps": [{"content": "rule: {input}"}] * 3})
    async with ModelTestServer([rule]) as server, aiohttp.ClientSession() as session:

        async def post() -> dict[str, object]:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            async with session.post(server.url + "/chat/completions", json=body) as resp:
                assert resp.status == 200
                data = orjson.loads(await resp.read())
                assert isinstance(data, dict)
                return data

        server.inject_reply(finish_reason="length")
        server.inject_reply(usage={"prompt_tokens": -12_000_000})
        cut, absurd, plain = await post(), await post(), await post()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] == "rule: hi"
    assert absurd["usage"] == {"prompt_tokens": -12_000_000}
    assert absurd["choices"][0]["finish_reason"] == "stop"
    assert plain["choices"][0]["finish_reason"] == "stop"
    assert plain["usage"]["prompt_tokens"] > 0


async def _stream_post(
    session: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> tuple[str, list[bytes]]:
    """The content type and the raw ``data`` of each event of a streamed answer."""
    async with session.post(url + "/chat/completions", json=body) as resp:
        assert resp.status == 200
        text = (await resp.read()).decode()
        kind = resp.headers["Content-Type"]
    assert text.endswith("\n\n")
    blocks = [block for block in text.split("\n\n") if block]
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks)
    return kind, [block.removeprefix("data: ").encode() for block in blocks]


async def test_a_stream_is_chunks_with_the_usage_last_when_asked() -> None:
    rule = ScriptedRule.model_validate(
        {"steps": [{"content": "one two  three", "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo, Norway"}}]}]}
    )  # fmt: skip
    async with ModelTestServer([rule]) as server, aiohttp.ClientSession() as session:
        whole_body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(server.url + "/chat/completions", json=whole_body) as resp:
            whole = orjson.loads(await resp.read())
        body = {**whole_body, "stream": True, "stream_options": {"include_usage": True}}
        kind, data = await _stream_post(session, server.url, body)
        assert kind.startswith("text/event-stream")
        assert data[-1] == b"[DONE]"
        chunks = [orjson.loads(d) for d in data[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert {c["id"] for c in chunks} == {whole["id"].replace("-1", "-2")}
        *parts, last = chunks
        assert last["choices"] == [] and last["usage"] == whole["usage"]
        assert all(c["usage"] is None for c in parts)
        deltas = [c["choices"][0]["delta"] for c in parts]
        assert deltas[0] == {"role": "assistant", "content": ""}
        assert [d["content"] for d in deltas if d.get("content")] == ["one ", "two  ", "three"]
        calls = [t for d in deltas for t in d.get("tool_calls", ())]
        message = whole["choices"][0]["message"]
        [expected] = message["tool_calls"]
        assert calls[0]["id"] == expected["id"]
        assert calls[0]["function"]["name"] == expected["function"]["name"]
        arguments = "".join(t["function"]["arguments"] for t in calls)
        assert arguments == expected["function"]["arguments"] and len(calls) > 2
        finish = [c["choices"][0]["finish_reason"] for c in parts]
        assert finish == [None] * (len(parts) - 1) + ["tool_calls"]
        # Without include_usage, no usage at all.
        _, data = await _stream_post(session, server.url, {**whole_body, "stream": True})
        chunks = [orjson.loads(d) for d in data[:-1]]
        assert all("usage" not in c and c["choices"] for c in chunks)
        assert server.completions_served == 3
        assert [r.get("stream") for r in server.requests] == [None, True, True]


async def test_a_stream_can_be_cut_off_midway() -> None:
    async with ModelTestServer() as server, aiohttp.ClientSession() as session:
        server.inject_reply(cut_after=2)
        body = {"messages": [{"role": "user", "content": "a b c d"}], "stream": True}
        async with session.post(server.url + "/chat/completions", json=body) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert server.completions_served == 0
