"""Schema migrations: numbered scripts, applied in order once each, for every backend.

Each backend keeps its scripts in ``agentrt/state/migrations/<backend>/`` as
``NNNN_what.sql`` (``0001_initial.sql``, ``0002_tool_calls.sql``, ...), in its
own SQL dialect. The list is append-only: a released script is never edited;
a change is a new number. A database records the numbers applied to it in its
``schema_version`` table (``version``, ``applied_at``).

The runner knows nothing of a database. A backend hands it a target, which
reads the applied numbers, executes a script and records a number, inside one
transaction the backend opens and commits (SQLite: ``BEGIN IMMEDIATE``, a
:class:`MigrationTarget` run by :func:`migrate`; PostgreSQL: a transaction
holding an advisory lock, so two workers starting together migrate once, an
:class:`AsyncMigrationTarget` run by :func:`migrate_async`). :func:`pending` is
the whole decision, and :func:`check_version` the check of a store opened
without migrating, the same for every backend.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final, Protocol

from agentrt.errors import StoreInvalid

__all__ = [
    "AsyncMigrationTarget",
    "Migration",
    "MigrationTarget",
    "check_version",
    "load_migrations",
    "migrate",
    "migrate_async",
    "pending",
]

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


class AsyncMigrationTarget(Protocol):
    """:class:`MigrationTarget` for a backend whose driver is async."""

    async def applied(self) -> Collection[int]:
        """The numbers recorded as applied (none for a new database)."""
        ...

    async def execute(self, script: str) -> None:
        """Run one migration's script (all its statements)."""
        ...

    async def record(self, number: int) -> None:
        """Record that migration ``number`` is applied."""
        ...


def load_migrations(backend: str) -> tuple[Migration, ...]:
    """The numbered scripts of ``backend`` (``"sqlite"``, ``"postgresql"``), in order.

    Numbers are handed out ahead to changes made side by side, so a number may be
    missing until the change holding it lands (each database records the numbers
    applied to it, so one landing later is still applied once, in order of what is
    pending); two files of one number are a packaging mistake.

    Raises:
        ValueError: A file is misnamed, two files have one number, or the first is
            not 1 (caught by the tests).
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
    if len(set(numbers)) != len(numbers) or (numbers and numbers[0] != 1):
        raise ValueError(f"{backend} migrations must be numbered from 1, once each: {numbers}")
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


async def migrate_async(
    target: AsyncMigrationTarget, migrations: Sequence[Migration], *, store: str
) -> list[int]:
    """:func:`migrate` for an :class:`AsyncMigrationTarget`: the same plan, awaited."""
    done: list[int] = []
    for migration in pending(migrations, await target.applied(), store=store):
        await target.execute(migration.script)
        await target.record(migration.number)
        done.append(migration.number)
    return done


def check_version(
    current: int, migrations: Sequence[Migration], *, store: str, writing: bool
) -> None:
    """Refuse a store whose schema version ``current`` this agentrt cannot use.

    Args:
        current: The newest migration the store records (0: none).
        migrations: The backend's migrations.
        store: The store, for messages.
        writing: Whether the caller will migrate an older schema (reads never do).

    Raises:
        StoreInvalid: The schema is newer than ``migrations``, or older and
            ``writing`` is false.
    """
    latest = migrations[-1].number if migrations else 0
    if current > latest:
        raise StoreInvalid(
            store,
            f"has schema version {current}, newer than this agentrt knows ({latest})",
            "upgrade agentrt to open it",
        )
    if current < latest and not writing:
        raise StoreInvalid(
            store,
            f"has schema version {current}, older than this agentrt reads ({latest}), "
            "and a command that only reads does not upgrade it",
            "run a command that writes first (e.g. `agentrt apply -f FILE`), which upgrades "
            "it, or use the agentrt that wrote it",
        )
