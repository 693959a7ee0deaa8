"""Which replica endpoint of a Model each session's model steps go to.

A Model may serve from several endpoints (its ``base_url`` and ``replicas``). A
provider's prefix cache lives in one of them, so a session whose prompt grows by
appending is served cheaper and sooner when every step of it goes to the same one.
Each session (a run outside a session: the run) is placed by consistent hashing
with bounded load: the endpoints sit on a hash ring (many points each), and a
session goes to the first endpoint clockwise from its own hash that is up and holds
fewer than ``ceil(load_factor * sessions / endpoints up)`` sessions (the
Model's ``affinity.load_factor``, 1.25 by default). It then sticks to it. It moves
only when that endpoint is down (it refused a connection, or its circuit is open:
passed over for ``affinity.down_s``) or holds more than the bound (after endpoints
came back), and then stays where it moved. With ``affinity.sticky: false`` each
call goes to the next endpoint up in turn instead (a plain load balancer).

The placements are this process's (a few thousand sessions per Model, the least
recently used forgotten first). A step records the replica it used (``replica`` on
its ``model.result`` and ``model.error``); replay and resume return the recorded
result, never asking again, and a session's recorded steps place it where they
went, so a resumed run keeps its replica in another process too.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from agentrt.engine import events as ev
from agentrt.spec.model_spec import ModelSpec
from agentrt.state.base import Event

__all__ = ["Replicas", "endpoints_of", "placements", "ring_order"]

_POINTS: Final = 100  # points per endpoint on the ring: an even share within a few percent
_KEEP: Final = 10_000  # sessions remembered per Model


def endpoints_of(spec: ModelSpec) -> list[str]:
    """A Model's endpoints: its ``base_url``, then its ``replicas``, without repeats."""
    urls = [u.rstrip("/") for u in ([spec.base_url] if spec.base_url else []) + spec.replicas]
    return list(dict.fromkeys(urls))


def placements(events: Sequence[Event]) -> dict[str, str]:
    """The replica each Model's last recorded step of a run went to, by Model name."""
    models: dict[int | None, str] = {}
    placed: dict[str, str] = {}
    for event in events:
        if event.type == ev.MODEL_CALL:
            models[event.step] = str(event.data.get("model"))
        elif event.type == ev.MODEL_RESULT and isinstance(event.data.get("replica"), str):
            model = event.data.get("via") or models.get(event.step)
            if model is not None:
                placed[str(model)] = event.data["replica"]
    return placed


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=256)
def _ring(endpoints: tuple[str, ...]) -> tuple[list[int], list[str]]:
    points = sorted((_hash(f"{url}#{i}"), url) for url in endpoints for i in range(_POINTS))
    return [p for p, _ in points], [url for _, url in points]


def ring_order(endpoints: Sequence[str], key: str) -> Iterator[str]:
    """The endpoints clockwise on the ring from ``key``'s hash, each once."""
    hashes, urls = _ring(tuple(endpoints))
    start = bisect.bisect(hashes, _hash(key))
    seen: set[str] = set()
    for i in range(len(urls)):
        url = urls[(start + i) % len(urls)]
        if url not in seen:
            seen.add(url)
            yield url
            if len(seen) == len(endpoints):
                return


class Replicas:
    """The replicas this process's sessions stick to, per tenant and Model."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, keep: int = _KEEP) -> None:
        """Time a replica's being down on ``clock``; remember ``keep`` sessions per Model."""
        self._clock = clock
        self._keep = keep
        self._placed: dict[tuple[str, str], OrderedDict[str, str]] = {}
        self._down: dict[str, float] = {}
        self._turns: dict[tuple[str, str], int] = {}  # calls of a Model not sticky, in all

    def pick(self, namespace: str, model: str, spec: ModelSpec, session: str) -> str | None:
        """The endpoint ``session``'s next call of Model ``model`` goes to (``None``: the
        Model has no endpoint); the session is placed there."""
        endpoints = endpoints_of(spec)
        if len(endpoints) < 2:
            return endpoints[0] if endpoints else None
        now = self._clock()
        live = [url for url in endpoints if self._down.get(url, 0.0) <= now] or endpoints
        if not spec.affinity.sticky:
            turn = self._turns[(namespace, model)] = self._turns.get((namespace, model), -1) + 1
            return live[turn % len(live)]
        placed = self._placed.setdefault((namespace, model), OrderedDict())
        current = placed.pop(session, None)
        loads = Counter(placed.values())
        bound = math.ceil(spec.affinity.load_factor * (len(placed) + 1) / len(live))
        if current in live and loads[current] < bound:
            chosen = current
        else:
            order = [url for url in ring_order(endpoints, session) if url in live]
            chosen = next((url for url in order if loads[url] < bound), order[0])
        placed[session] = chosen
        if len(placed) > self._keep:
            placed.popitem(last=False)
        return chosen

    def remember(self, namespace: str, model: str, session: str, replica: str) -> None:
        """Place ``session`` where a recorded step of it went (resume keeps it there)."""
        placed = self._placed.setdefault((namespace, model), OrderedDict())
        placed.pop(session, None)
        placed[session] = replica
        if len(placed) > self._keep:
            placed.popitem(last=False)

    def down(self, replica: str, spec: ModelSpec) -> None:
        """Pass over ``replica`` for the Model's ``affinity.down_s``: it is unreachable."""
        self._down[replica] = self._clock() + spec.affinity.down_s

    def loads(self, namespace: str, model: str) -> Counter[str]:
        """How many of the sessions remembered are placed on each replica of ``model``."""
        return Counter(self._placed.get((namespace, model), {}).values())
