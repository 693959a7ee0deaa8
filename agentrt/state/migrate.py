"""Schema migrations: numbered scripts, applied in order once each, for every backend.

Each backend keeps its scripts in ``agentrt/state/migrations/<backend>/`` as
``NNNN_what.sql`` (``0001_initial.sql``, ``0002_tool_calls.sql``, ...), in its
own SQL dialect. The list is append-only: a released script is never edited;
a change is a new number. A database records the numbers applied to it in its
``schema_version`` table (``version``, ``applied_at``).

The runner knows nothing of a database. A backend hands it a
:class:`MigrationTarget`, which reads the applied numbers, executes a script
and records a number, inside one transaction the backend opens and commits
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction holding an advisory
lock, so two workers starting together migrate once). :func:`pending` is the
whole decision, so a backend whose driver is async runs the same plan with
``await``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final, Protocol

from agentrt.errors import StoreInvalid

__all__ = ["Migration", "MigrationTarget", "load_migrations", "migrate", "pending"]

_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of a backend's schema: a script in its SQL dialect."""

    number: int
    name: str
    script: str


class MigrationTarget(Protocol):
    """What the runner needs of a database, inside the backend's transaction."""

    def applied(self) -> Collection[int]:
        """The numbers recorded as applied (none for a new database)."""
        ...

    def execute(self, script: str) -> None:
        """Run one migration's script (all its statements)."""
        ...

    def record(self, number: int) -> None:
        """Record that migration ``number`` is applied."""
        ...


def load_migrations(backend: str) -> tuple[Migration, ...]:
    """The numbered scripts of ``backend`` (``"sqlite"``), in order.

    Raises:
        ValueError: A file is misnamed, or the numbers do not run 1, 2, 3, ...
            without a gap (a packaging mistake, caught by the tests).
    """
    folder = resources.files("agentrt.state").joinpath("migrations", backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} is not named NNNN_what.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"{backend} migrations must be numbered 1..{len(found)}: {numbers}")
    return tuple(found)


def pending(
    migrations: Sequence[Migration], applied: Collection[int], *, store: str
) -> list[Migration]:
    """The migrations still to apply to a database that has ``applied``, in order.

    Raises:
        StoreInvalid: The database has a migration this agentrt does not know (a
            newer agentrt made it).
    """
    latest = migrations[-1].number if migrations else 0
    newest = max(applied, default=0)
    if newest > latest:
        raise StoreInvalid(
            store,
            f"has schema version {newest}, newer than this agentrt knows ({latest})",
            "upgrade agentrt to open it",
        )
    done = set(applied)
    return [m for m in migrations if m.number not in done]


def migrate(target: MigrationTarget, migrations: Sequence[Migration], *, store: str) -> list[int]:
    """Apply the pending migrations to ``target``, in order; return their numbers.

    Runs inside the caller's transaction: on an error nothing is recorded, and
    the caller rolls back.

    Raises:
        StoreInvalid: As for :func:`pending`.
    """
    done: list[int] = []
    for migration in pending(migrations, target.applied(), store=store):
        target.execute(migration.script)
        target.record(migration.number)
        done.append(migration.number)
    return done
