"""The route of one model step through its chain: which Model each call went to, which
were skipped and why, the endpoints' circuit breakers asked and told; all recorded
on the step.

Before a Model of the chain is called, its endpoint's circuit is asked
(:class:`~agentrt.engine.circuit_breakers.Circuits`): while it is open the Model is
skipped without a call, and the step goes on to the next one. Every call's failure
is counted against its endpoint, and an answer forgets the failures before it or,
from the one probe of an open circuit, closes it. A Model whose circuit is open
after its failure is not retried: the step moves on at once.

What the step records:

- each Model skipped: a ``model.error`` with ``why: circuit_open``, the error the
  step fails with if nothing answers, and ``until`` (when a probe may go through);
- each failed call: the ``model.error`` it always had, with ``why`` (``http_429``,
  ``http_500``, ``timeout``, ``unreachable``, ``bad_reply``, ...);
- the answer: ``via`` (the fallback that answered, as before) and, unless the first
  Model answered its first call, ``route``: one entry per Model tried, in order,
  ``{model, outcome, attempts, [probe]}``.

A Model with ``replicas`` is called at the replica its session sticks to
(:mod:`agentrt.engine.replicas`): each replica has a circuit of its own, and a
replica whose circuit is open, or that a call could not reach, is passed over for
the next one of the session before the Model is given up for its fallbacks.

A recorded step is never routed again: resume and replay return its recorded
result, from whichever Model it came, whatever the circuits say now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agentrt._text import count
from agentrt.engine import events as ev
from agentrt.engine.journal import Journal
from agentrt.engine.replicas import endpoints_of
from agentrt.errors import ModelError, RunError, StepTimeout
from agentrt.spec.model_spec import ModelSpec
from agentrt.state.circuits import circuit_key

__all__ = ["CIRCUIT_OPEN", "ModelRoute", "counts_against", "why_failed"]

CIRCUIT_OPEN: Final = "circuit_open"
"""Why a Model was skipped without a call."""

_PROBE_MARGIN_S: Final = 5.0  # a probe's claim outlasts its call by this much


def why_failed(error: RunError) -> str:
    """Why a call failed, in a word: ``http_STATUS``, ``timeout``, ``unreachable`` (no
    answer at all), ``bad_reply`` (an answer that is not a usable completion)."""
    if isinstance(error, StepTimeout):
        return "timeout"
    if isinstance(error, ModelError):
        if error.timed_out:
            return "timeout"
        if error.status is None:
            return "unreachable" if error.retryable else "bad_reply"
        return "bad_reply" if 200 <= error.status < 300 else f"http_{error.status}"
    return error.code


def counts_against(why: str) -> bool:
    """Whether a failure says the endpoint is unwell: any but a 4xx other than 408 and
    429, which is the request's own fault (the endpoint answered it)."""
    return not why.startswith("http_4") or why in ("http_408", "http_429")


class ModelRoute:
    """One model step's walk through its chain, as the gateway makes it."""

    def __init__(
        self,
        journal: Journal,
        namespace: str,
        step: int,
        models: Mapping[str, ModelSpec],
        *,
        call_s: float,
    ) -> None:
        """The route of ``step``; a call takes at most ``call_s``."""
        self._journal = journal
        self._namespace = namespace
        self._step = step
        self._models = models
        self._hold_s = call_s + _PROBE_MARGIN_S
        self._tried: list[dict[str, Any]] = []
        self._probes: dict[str, str] = {}
        self._endpoints: dict[str, str] = {}

    def use(self, name: str, endpoint: str) -> None:
        """Model ``name``'s calls go to ``endpoint`` (one of its replicas) from now on:
        its circuit is that endpoint's."""
        self._endpoints[name] = endpoint

    async def place(self, name: str, session: str) -> tuple[str | None, ModelError | None]:
        """The replica endpoint ``session``'s next call of Model ``name`` goes to
        (``None``: the Model has one endpoint) and, as :meth:`skip`, the error of the
        Model skipped: every replica's circuit is open. A replica whose circuit is open
        is passed over (see :mod:`agentrt.engine.replicas`)."""
        spec, replicas = self._models[name], self._journal.replicas
        if replicas is None or len(endpoints_of(spec)) < 2:
            return None, await self.skip(name)
        replica, error = None, None
        for _ in endpoints_of(spec):
            replica = replicas.pick(self._namespace, name, spec, session)
            if replica is None:
                break
            self.use(name, replica)
            if (error := await self.skip(name)) is None:
                return replica, None
            replicas.down(replica, spec)
        return replica, error

    def down(self, name: str) -> None:
        """The replica Model ``name``'s calls went to is down: its sessions move."""
        replicas, endpoint = self._journal.replicas, self._endpoints.get(name)
        if replicas is not None and endpoint is not None:
            replicas.down(endpoint, self._models[name])

    def _key(self, name: str) -> str | None:
        """The circuit of Model ``name``'s endpoint, if it has one that is asked."""
        spec = self._models[name]
        endpoint = self._endpoints.get(name, spec.base_url)
        if self._journal.circuits is None or not spec.circuit.enabled or not endpoint:
            return None
        return circuit_key(self._namespace, name, endpoint)

    async def skip(self, name: str) -> ModelError | None:
        """The error of Model ``name`` skipped because its circuit is open (recorded on
        the step), or ``None``: call it (maybe as the circuit's probe)."""
        key = self._key(name)
        circuits = self._journal.circuits
        if key is None or circuits is None:
            return None
        now = self._journal.clock()
        admission = await circuits.admit(
            self._journal.store, key, self._namespace, now=now, hold_s=self._hold_s
        )
        if admission.probe is not None:
            self._probes[name] = admission.probe
        if admission.verdict != "skip":
            return None
        c = admission.circuit
        until = c.open_until if c.state == "open" else c.probe_until
        state = (
            f"open after {count(c.failures, 'failed call')} in a row"
            if c.state == "open"
            else "half open: another call is probing it"
        )
        error = ModelError(
            f"model {name!r} was skipped, not called: the circuit of its endpoint is {state}; "
            f"a probe may go through in {max(0.0, until - now):.1f}s",
            retryable=True,
        )
        self._tried.append({"model": name, "outcome": CIRCUIT_OPEN, "attempts": 0})
        data = {"model": name, "why": CIRCUIT_OPEN, "until": until, "error": error.to_dict()}
        await self._journal.append(ev.MODEL_ERROR, data, step=self._step, durable=False)
        return error

    async def failed(self, name: str, attempt: int, error: RunError) -> bool:
        """Count call ``attempt`` of Model ``name`` failed; whether its circuit is open
        now (the step then tries it no more)."""
        why = why_failed(error)
        self._note(name, why, attempt)
        key, circuits = self._key(name), self._journal.circuits
        if key is None or circuits is None:
            return False
        store, probe, now = self._journal.store, self._probes.pop(name, None), self._journal.clock()
        if not counts_against(why):  # the endpoint answered: it is well
            await circuits.succeeded(store, key, self._namespace, probe=probe, now=now)
            return False
        policy = self._models[name].circuit
        circuit = await circuits.failed(store, key, self._namespace, policy, probe=probe, now=now)
        return circuit.state != "closed"

    async def answered(self, name: str, attempt: int) -> dict[str, Any]:
        """Model ``name`` answered call ``attempt``: its circuit is told; what the
        step's result records of the route (nothing when the first call answered)."""
        probe = self._probes.pop(name, None)
        self._note(name, "answered", attempt, probe=probe is not None)
        key, circuits = self._key(name), self._journal.circuits
        if key is not None and circuits is not None:
            await circuits.succeeded(
                self._journal.store, key, self._namespace, probe=probe, now=self._journal.clock()
            )
        plain = len(self._tried) == 1 and self._tried[0] == {
            "model": name, "outcome": "answered", "attempts": 1
        }  # fmt: skip
        return {} if plain else {"route": self._tried}

    def _note(self, name: str, outcome: str, attempt: int, *, probe: bool = False) -> None:
        if not self._tried or self._tried[-1]["model"] != name:
            self._tried.append({"model": name})
        entry = self._tried[-1]
        entry.update(outcome=outcome, attempts=attempt)
        if probe:
            entry["probe"] = True
