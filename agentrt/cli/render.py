"""Human-readable output of runs: the live step trace and the step tree."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from agentrt import _json
from agentrt._text import count
from agentrt.cli import step_routes
from agentrt.engine import RunResult
from agentrt.engine import events as ev
from agentrt.state.base import ACTIVE_STATUSES, WAITING_STATUSES, Event, RunRecord

__all__ = ["LiveTrace", "Style", "render_result", "render_run_list", "render_run_tree"]


@dataclass(frozen=True)
class Style:
    """ANSI styling, off when output is not a terminal or NO_COLOR is set."""

    enabled: bool = False

    @classmethod
    def for_stream(cls, stream: TextIO, *, no_color: bool = False) -> Style:
        """Colour when ``stream`` is a terminal, unless ``no_color`` (``NO_COLOR`` is set)."""
        return cls(stream.isatty() and not no_color)

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def dim(self, text: str) -> str:
        """Dim text."""
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        """Bold text."""
        return self._wrap("1", text)

    def status(self, status: str) -> str:
        """A run status, coloured by outcome: green, yellow when a person must act (or
        for a notice, or a Model skipped), cyan while it runs, red for any other end."""
        if status == "succeeded":
            code = "32"
        elif status in WAITING_STATUSES or status in ("notice", "skipped"):
            code = "33"
        elif status in ACTIVE_STATUSES:
            code = "36"
        else:
            code = "31"
        return self._wrap(code, status)


def _rate_wait(data: Mapping[str, Any]) -> str:
    """How long a call waited its turn, and under which limit of which Model."""
    return (
        f"{float(data.get('wait_s', 0.0)):.2f}s for model {data.get('model')}'s rate limit "
        f"{data.get('limit')}={data.get('value')}"
    )


def clip(text: str | None, width: int = 80) -> str:
    """One line of at most ``width`` characters."""
    if text is None:
        return ""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _args(arguments: str, width: int = 60) -> str:
    try:
        parsed = _json.loads(arguments or "{}")
    except ValueError:
        return clip(arguments, width)
    if isinstance(parsed, dict):
        return clip(", ".join(f"{k}={v!r}" for k, v in parsed.items()), width)
    return clip(arguments, width)


@dataclass
class LiveTrace:
    """An event observer that prints each step as it is recorded.

    It is shown the log of every run it picks up (a :class:`LogAwareObserver`),
    so a resumed run's steps still name their model or tool, are timed, and
    count the tokens and cost recorded before the interruption.
    """

    out: TextIO = field(default_factory=lambda: sys.stdout)
    style: Style = field(default_factory=Style)
    # Called when ``out``'s reader is gone (`agentrt run ... | head`). The journal
    # keeps an observer's errors from the run, so the CLI hears of it this way.
    on_closed: Callable[[], None] | None = None
    _starts: dict[tuple[str, int], float] = field(default_factory=dict)  # intent ts
    _calls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    _tokens: dict[str, int] = field(default_factory=dict)
    _cost: dict[str, float] = field(default_factory=dict)
    _unstarted: dict[str, set[tuple[str, int]]] = field(default_factory=dict)

    def log_loaded(self, run_id: str, events: Sequence[Event]) -> None:
        """Take up what ``run_id``'s log already holds: totals and steps with no result."""
        self._tokens[run_id] = sum(
            e.data.get("in", 0) + e.data.get("out", 0) for e in events if e.type == ev.MODEL_RESULT
        )
        self._cost[run_id] = sum(
            e.data.get("cost", 0.0) for e in events if e.type == ev.MODEL_RESULT
        )
        open_steps = in_flight(events)
        for step, intent in open_steps.items():
            self._calls[(run_id, step)] = intent.data
        # Timed from the run's (re)start: the step is performed again from there,
        # and the time it was first begun includes however long the run was stopped.
        self._unstarted[run_id] = {(run_id, step) for step in open_steps}

    def __call__(self, run_id: str, event: Event) -> None:
        """Print ``event`` of ``run_id`` if it is worth a line."""
        key = (run_id, event.step or 0)
        s = self.style
        if event.type == ev.RUN_STARTED:
            verb = "resumed" if event.data.get("resumed") else "started"
            for waiting in self._unstarted.pop(run_id, set()):
                self._starts.setdefault(waiting, event.ts)
            self._line(f"{s.bold(run_id)} {verb}")
        elif event.type in (ev.MODEL_CALL, ev.TOOL_CALL):
            self._starts[key] = event.ts
            self._calls[key] = event.data
            for notice in event.data.get("notices") or ():  # what the step could not offer
                self._line(f"  step {event.step:>3}  {s.status('notice')}: {notice}")
        elif event.type == ev.MODEL_RESULT:
            tokens = self._tokens[run_id] = (
                self._tokens.get(run_id, 0) + event.data.get("in", 0) + event.data.get("out", 0)
            )
            cost = self._cost[run_id] = self._cost.get(run_id, 0.0) + event.data.get("cost", 0.0)
            calls = event.data.get("calls") or []
            what = (
                "→ " + ", ".join(name for _, name, _ in calls)
                if calls
                else "→ answer: " + clip(event.data.get("content"), 60)
            )
            intent = self._calls.pop(key, {})
            model = event.data.get("via") or intent.get("model", "")
            if intent.get("kind") == "summary":
                summary = clip(event.data.get("content"), 60)
                self._line(f"  {s.bold('memory')}  {_earlier_turns(intent)} summarised: {summary}")
                return
            self._line(
                f"  step {event.step:>3}  {s.bold(intent.get('kind', 'plan'))}  {model} {what}  "
                f"{s.dim(self._ms(key, event))}  {s.dim(f'tokens {tokens}  ${cost:.4f}')}"
            )
        elif event.type == ev.MODEL_WAITING:
            self._line(f"  step {event.step:>3}  {s.dim('waits ' + _rate_wait(event.data))}")
        elif event.type == ev.MODEL_CHECKED and not event.data.get("passed"):
            checked = step_routes.checked(event.data)
            self._line(f"  step {event.step:>3}  {s.dim('check: ' + checked)}")
        elif event.type == ev.MODEL_ERROR:
            self._line(f"  step {event.step:>3}  {_model_error(event, s, 70)}")
        elif event.type == ev.TOOL_RESULT:
            call = self._calls.pop(key, {})
            mark = s.status("failed") + " " if event.data.get("error") else ""
            took = self._ms(key, event)
            if event.data.get("reconciled"):  # not performed here: say how it was decided
                took = f"reconciled by {event.data['reconciled']}"
            self._line(
                f"  step {event.step:>3}  {s.bold('act')}   {call.get('name', '?')}"
                f"({_args(call.get('args', ''), 40)}) → {mark}{clip(event.data.get('output'), 50)}"
                f"  {s.dim(took)}"
            )
        elif event.type == ev.TOOL_UNKNOWN:
            self._line(f"  step {event.step:>3}  {s.status('unknown')}  {event.data.get('reason')}")
        elif event.type == ev.NODE_FINISHED:
            data = event.data
            item = f" item {data.get('item')}" if int(data.get("items", 1)) > 1 else ""
            output = data.get("output")
            text = output if isinstance(output, str) or output is None else _json.dumps_str(output)
            self._line(
                f"{s.bold(run_id)} node {s.bold(str(data.get('node')))}{item} round "
                f"{data.get('round')} {s.status(str(data.get('status')))} → {clip(text, 60)}"
            )
        elif event.type == ev.MEMORY_SUMMARY:
            self._line(
                f"  {s.bold('memory')}  {_earlier_turns(event.data)} summarised: "
                f"{clip(event.data.get('text'), 60)}"
            )
        elif event.type == ev.RUN_WAITING:
            waits = s.status(waiting_status(event.data))
            self._line(f"{s.bold(run_id)} {waits}: {event.data.get('reason')}")

    def _ms(self, key: tuple[str, int], end: Event) -> str:
        # Recorded timestamps, not arrival: events reach observers in committed batches.
        start = self._starts.pop(key, None)
        return "" if start is None else f"{(end.ts - start) * 1000:.0f}ms"

    def _line(self, text: str) -> None:
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:
            if self.on_closed is None:
                raise
            self.on_closed()


def in_flight(events: Sequence[Event]) -> dict[int, Event]:
    """The intent of every step that has no result (or unknown outcome) in ``events``."""
    intents: dict[int, Event] = {}
    for e in events:
        if e.step is None:
            continue
        if e.type in (ev.MODEL_CALL, ev.TOOL_CALL):
            intents[e.step] = e
        elif e.type in (ev.MODEL_RESULT, ev.TOOL_RESULT):
            intents.pop(e.step, None)
    return intents


def waiting_status(data: dict[str, Any]) -> str:
    """The status a ``run.waiting`` event put its run in: approvals have their own."""
    return "waiting_approval" if data.get("approval") else "waiting"


def render_result(result: RunResult, style: Style) -> str:
    """The closing lines of a run: status, usage, output."""
    u = result.usage
    steps = f" in {count(result.steps, 'step')}" if result.steps else ""
    head = (
        f"{style.status(result.status)}{steps} · tokens {u.total_tokens} "
        f"(in {u.input_tokens} / out {u.output_tokens}) · tool calls {u.tool_calls} · "
        f"${u.cost_usd:.4f}"
    )
    lines = [head]
    if result.reason:
        lines.append(f"reason: {result.reason}")
    if result.output is not None:
        lines.append(f"output: {result.output}")
    return "\n".join(lines)


def render_run_list(
    runs: Sequence[RunRecord], style: Style, waits: Mapping[str, str] | None = None
) -> str:
    """A table of runs, newest first; a queued run's place and wait in ``waits``."""
    waits = waits or {}
    rows = [("RUN", "AGENT", "STATUS", "TOKENS", "TOOLS", "COST", "CREATED", "SESSION", "WAITS")]
    for r in runs:
        rows.append(
            (
                r.id,
                f"{r.namespace}/{r.agent}",
                r.status,
                str(r.usage.total_tokens),
                str(r.usage.tool_calls),
                f"${r.usage.cost_usd:.4f}",
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)),
                r.session_id or "-",
                waits.get(r.id, ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        if n > 0:
            cells[2] = style.status(row[2]) + " " * (widths[2] - len(row[2]))
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


RunLog = tuple[RunRecord, Sequence[Event]]


def render_run_tree(
    run: RunRecord,
    events: Sequence[Event],
    style: Style,
    children: Mapping[str, RunLog] | None = None,
) -> str:
    """A run as a tree of steps with timing, tokens, and tool inputs/outputs.

    A team run's nodes are listed as they ended; a node whose child run is in
    ``children`` has that run's own tree nested under it.
    """
    tree = _Tree(run, style, children or {})
    for e in events:
        tree.see(e)
    return "\n".join([*_run_header(run, style), *tree.lines, *tree.in_flight()])


def _run_header(run: RunRecord, s: Style) -> list[str]:
    """The run's first lines: its id, status, time and usage; its session, fork or parent."""
    u = run.usage
    end = run.finished_at or run.updated_at
    lines = [
        f"{s.bold(run.id)}  {run.namespace}/{run.agent}  {s.status(run.status)}  "
        f"{end - run.created_at:.2f}s  tokens {u.total_tokens} (in {u.input_tokens} / "
        f"out {u.output_tokens})  tool calls {u.tool_calls}  ${u.cost_usd:.4f}"
    ]
    if run.session_id:
        lines.append(f"│ session {run.session_id} turn {run.turn}")
    if run.parent_run and run.fork_step is not None:
        lines.append(f"│ forked from {run.parent_run} at step {run.fork_step}")
    elif run.parent_run:
        lines.append(f"│ child run of {run.parent_run} (an agent tool call or a team node)")
    return lines


# The method of _Tree that draws each event type.
_DRAW: dict[str, str] = {
    ev.RUN_CREATED: "_created",
    ev.RUN_STARTED: "_started",
    ev.RUN_REOPENED: "_reopened",
    ev.MODEL_CALL: "_intent",
    ev.TOOL_CALL: "_intent",
    ev.MODEL_RESULT: "_model_result",
    ev.MODEL_ERROR: "_model_error",
    ev.MODEL_WAITING: "_model_waiting",
    ev.MODEL_CHECKED: "_model_checked",
    ev.TOOL_RESULT: "_tool_result",
    ev.TOOL_UNKNOWN: "_tool_unknown",
    ev.TOOL_DECISION: "_decision",
    ev.APPROVAL_REQUESTED: "_approval_requested",
    ev.APPROVAL_DECIDED: "_approval_decided",
    ev.NODE_STARTED: "_node_started",
    ev.NODE_FINISHED: "_node_finished",
    ev.MEMORY_SUMMARY: "_memory_summary",
    ev.RUN_WAITING: "_waiting",
    ev.RUN_FINISHED: "_finished",
}
_RESULTS = (ev.MODEL_RESULT, ev.TOOL_RESULT, ev.TOOL_UNKNOWN)


@dataclass
class _Tree:
    """The step tree of one run, drawn event by event."""

    run: RunRecord
    s: Style
    children: Mapping[str, RunLog]
    lines: list[str] = field(default_factory=list)
    starts: dict[int, Event] = field(default_factory=dict)  # step -> its intent
    done: set[int] = field(default_factory=set)  # steps with a recorded result
    nodes_open: dict[tuple[str, int, int], Event] = field(default_factory=dict)

    def see(self, e: Event) -> None:
        """Draw one event of the log."""
        if e.step is not None and e.type in _RESULTS:
            self.done.add(e.step)
        method = _DRAW.get(e.type)
        if method is not None:
            getattr(self, method)(e)

    def in_flight(self) -> list[str]:
        """Steps and team nodes that started and have no end recorded."""
        s = self.s
        lines = [
            f"├─ step {step}  {self.starts[step].type}  {s.status('in flight')} "
            "(no result recorded)"
            for step in sorted(set(self.starts) - self.done)
        ]
        for (node, round_, _), e in self.nodes_open.items():
            lines.append(
                f"├─ node {node}  round {round_}  {s.status('in flight')}  "
                f"{e.data.get('kind', '').lower()} {e.data.get('target', '')}"
            )
        return lines

    def _created(self, e: Event) -> None:
        self.lines.append(f"├─ input: {clip(e.data.get('input'), 100)}")

    def _started(self, e: Event) -> None:
        verb = "resumed" if e.data.get("resumed") else "started"
        self.lines.append(self.s.dim(f"├─ {verb} by {e.data.get('owner')}"))

    def _reopened(self, e: Event) -> None:
        added = ", ".join(f"{name} +{value}" for name, value in e.data.get("added", {}).items())
        by = f" by {e.data['by']}" if e.data.get("by") else ""
        self.lines.append(f"├─ {self.s.status('raised')}{by}: {added or 'nothing added'}")

    def _intent(self, e: Event) -> None:
        if e.step is None:
            return
        self.starts[e.step] = e
        for notice in e.data.get("notices") or ():
            self.lines.append(f"├─ step {e.step}  {self.s.status('notice')}: {notice}")
        if e.data.get("attempt"):  # the step performed again, claimed by its own intent
            self.done.discard(e.step)
            why = "as decided (rerun)" if e.data.get("decision") else "after a crash"
            name, attempt = e.data.get("name"), e.data["attempt"]
            self.lines.append(f"├─ step {e.step}  tool {name}  attempt {attempt} {why}")

    def _model_result(self, e: Event) -> None:
        if e.step is None:
            return
        took = _took(self.starts.get(e.step), e)
        intent = self.starts[e.step].data if e.step in self.starts else {}
        model = e.data.get("via") or intent.get("model", "")
        if intent.get("kind") == "summary":
            self.lines += _summary_lines(_summary_data(intent, e.data))
            return
        if intent.get("kind"):  # a team's route
            model = f"{model} ({intent['kind']})"
        self.lines.append(
            f"├─ step {e.step}  model {model}  {took}  "
            f"tokens in {e.data.get('in', 0)} / out {e.data.get('out', 0)}  "
            f"${e.data.get('cost', 0.0):.5f}"
        )
        if intent.get("routing"):  # the Agent's routing picked the Model
            self.lines.append(f"│    routed: {step_routes.routed(intent['routing'])}")
        if intent.get("degraded"):  # a Budget ran low: only the cheapest Model was asked
            self.lines.append(f"│    degraded: {step_routes.degraded(intent['degraded'])}")
        if e.data.get("route"):  # not the first Model's first call: how it came to this one
            self.lines.append(f"│    route: {step_routes.route(e.data['route'])}")
        if e.data.get("content"):
            self.lines.append(f"│    reply: {clip(e.data['content'], 96)}")
        for call_id, name, arguments in e.data.get("calls") or []:
            self.lines.append(f"│    calls: {name}({_args(arguments, 80)})  [{call_id}]")

    def _model_error(self, e: Event) -> None:
        self.lines.append(f"├─ step {e.step}  {_model_error(e, self.s, 80)}")

    def _model_waiting(self, e: Event) -> None:
        self.lines.append(f"├─ step {e.step}  waited {_rate_wait(e.data)}")

    def _model_checked(self, e: Event) -> None:
        self.lines.append(f"│    check: {step_routes.checked(e.data)}")

    def _tool_result(self, e: Event) -> None:
        if e.step is None:
            return
        call = self.starts.get(e.step)
        name = call.data.get("name") if call else "?"
        status = self.s.status("error") if e.data.get("error") else "ok"
        extra = f"  reconciled by {e.data['reconciled']}" if e.data.get("reconciled") else ""
        self.lines.append(
            f"├─ step {e.step}  tool {name}  {status}  {e.data.get('ms', 0):.1f}ms{extra}"
        )
        if call:
            self.lines.append(f"│    input:  {clip(call.data.get('args'), 96)}")
            key = call.data.get("key") or f"{self.run.id}:{e.step}:{call.data.get('id')}"
            self.lines.append(f"│    key:    {key}")
        self.lines.append(f"│    output: {clip(e.data.get('output'), 96)}")
        for line in _trace_lines(e.data.get("trace") or {}):
            self.lines.append(f"│    {line}")

    def _tool_unknown(self, e: Event) -> None:
        call = self.starts.get(e.step or 0)
        name = call.data.get("name") if call else "?"
        self.lines.append(f"├─ step {e.step}  tool {name}  {self.s.status('unknown')}")
        self.lines.append(f"│    {clip(e.data.get('reason'), 100)}")

    def _decision(self, e: Event) -> None:
        action, output = e.data.get("action"), clip(e.data.get("output"), 60)
        self.lines.append(f"├─ step {e.step}  decision: {action} {output}")

    def _approval_requested(self, e: Event) -> None:
        args = _args(e.data.get("args", ""), 60)
        waits = self.s.status("waiting")
        self.lines.append(f"├─ step {e.step}  {waits} for approval: {e.data.get('name')}({args})")

    def _approval_decided(self, e: Event) -> None:
        verdict = "approved" if e.data.get("approved") else "denied"
        by = f" by {e.data['by']}" if e.data.get("by") else ""
        why = f": {e.data['reason']}" if e.data.get("reason") else ""
        self.lines.append(f"├─ step {e.step}  {verdict}{by}{why}")

    def _node_started(self, e: Event) -> None:
        self.nodes_open[ev.node_instance(e.data)] = e

    def _node_finished(self, e: Event) -> None:
        self.nodes_open.pop(ev.node_instance(e.data), None)
        self.lines += _node_lines(e.data, self.s)
        child = self.children.get(str(e.data.get("child_run")))
        if child is not None:
            nested = render_run_tree(child[0], child[1], self.s, self.children)
            self.lines += [f"│    {line}" for line in nested.splitlines()]

    def _memory_summary(self, e: Event) -> None:  # as older versions recorded a summary
        self.lines += _summary_lines(e.data)

    def _waiting(self, e: Event) -> None:
        self.lines.append(f"├─ {self.s.status(waiting_status(e.data))}: {e.data.get('reason')}")

    def _finished(self, e: Event) -> None:
        summary = clip(e.data.get("output") or e.data.get("reason"), 100)
        self.lines.append(f"└─ {self.s.status(e.data.get('status', '?'))}: {summary}")


def _node_lines(data: dict[str, Any], s: Style) -> list[str]:
    """A team node's end: where it ran, how it ended, its child run and output."""
    item = f" item {data.get('item')}" if int(data.get("items", 1)) > 1 else ""
    child = f"  child {data['child_run']}" if data.get("child_run") else ""
    lines = [
        f"├─ node {data.get('node')}  round {data.get('round')}{item}  "
        f"{s.status(str(data.get('status')))}{child}"
    ]
    output = data.get("output")
    if output is not None:
        text = output if isinstance(output, str) else _json.dumps_str(output)
        lines.append(f"│    output: {clip(text, 96)}")
    if data.get("reply"):
        lines.append(f"│    chosen by its model, which answered: {clip(data['reply'], 70)}")
    if data.get("status") == "failed" and data.get("reason"):
        lines.append(f"│    {clip(data['reason'], 100)}")
    if data.get("loops"):
        lines.append(f"│    loops back: round {int(data.get('round', 1)) + 1} follows")
    return lines


def _trace_lines(trace: dict[str, Any]) -> list[str]:
    """How a tool ran, from its recorded trace (sandbox, exit, resources, child run)."""
    out = []
    if "backend" in trace:
        out.append(
            f"sandbox: {trace['backend']} {trace.get('sandbox_id', '')}  "
            f"end: {trace.get('reason', '?')}  exit: {trace.get('exit_code')}"
        )
        use = []
        if trace.get("cpu_s") is not None:
            use.append(f"cpu {trace['cpu_s']:.2f}s")
        if trace.get("max_memory_bytes"):
            use.append(f"memory {trace['max_memory_bytes'] / 1e6:.1f} MB")
        if use:
            out.append("used:   " + ", ".join(use))
        if trace.get("stderr"):
            out.append(f"stderr: {clip(trace['stderr'], 96)}")
        if trace.get("artifact"):
            out.append(f"full output: {trace['artifact']}")
        for conn in trace.get("network") or []:
            verdict = "allowed" if conn.get("allowed") else "refused"
            why = f" ({conn['error']})" if conn.get("error") else ""
            out.append(f"network: {conn.get('host')}:{conn.get('port')} {verdict}{why}")
    if "child_run" in trace:
        out.append(f"child run: {trace['child_run']} ({trace.get('status')})")
    if "status" in trace and "url" in trace:
        out.append(f"http: {trace.get('method', '')} {trace['url']} → {trace['status']}")
    if "server" in trace:
        out.append(f"mcp: {trace['server']} ({trace.get('transport', '')})")
    return out


def _summary_data(intent: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A summary step's intent and result as the fields of a ``memory.summary`` event."""
    return {
        **intent,
        "model": result.get("via") or intent.get("model"),
        "text": (result.get("content") or "").strip(),
        "usage": [result.get("in", 0), result.get("out", 0)],
    }


def _summary_lines(data: dict[str, Any]) -> list[str]:
    """A session summary: what it folded, by which model, and its text."""
    used = data.get("usage") or [0, 0, 0.0]
    return [
        f"├─ session memory: {_earlier_turns(data)} summarised by model "
        f"{data.get('model')} (through {data.get('through')}; "
        f"{data.get('kept')} kept verbatim)  tokens in {used[0]} / out {used[1]}",
        f"│    summary: {clip(data.get('text'), 96)}",
    ]


def _earlier_turns(data: dict[str, Any]) -> str:
    """How many earlier turns a memory summary folded: "1 earlier turn", "3 earlier turns"."""
    return count(int(data.get("turns") or 0), "earlier turn")


def _took(start: Event | None, end: Event) -> str:
    return "" if start is None else f"{(end.ts - start.ts) * 1000:.0f}ms"


def _model_error(event: Event, s: Style, width: int) -> str:
    """A failed call of a model step, or a Model it skipped (its circuit open)."""
    data = event.data
    if data.get("why") == "circuit_open":
        wait = max(0.0, float(data.get("until") or 0.0) - event.ts)
        return (
            f"{s.status('skipped')} model {data.get('model')}: its circuit is open, "
            f"not called (a probe may go through in {wait:.0f}s)"
        )
    message = clip(data.get("error", {}).get("message"), width)
    why = f" ({data['why']})" if data.get("why") else ""
    attempt = data.get("attempt")
    return f"{s.status('error')} model {data.get('model')} attempt {attempt}{why}: {message}"
