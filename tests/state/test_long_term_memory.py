"""Long-term memory on every backend, the same tests: SQLite (FTS5) and PostgreSQL
(full-text search); both stem, take a query as words only, and keep tenants apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentrt.state import MemoryStore, NewMemory, Store
from tests.pg import empty, url_of

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    schema = request.getfixturevalue("pg_module_schema")
    async with Store.from_url(url_of(schema)):
        pass  # made and migrated before emptying it
    await empty(schema)
    return url_of(schema)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Any]:
    """An open store of each backend (both implement MemoryStore)."""
    async with Store.from_url(store_url) as opened:
        yield opened


FACTS = [
    "The staging database is rebuilt every Sunday at 02:00 UTC.",
    "Ada prefers answers as bullet lists.",
    "Production deploys are frozen during the last week of December.",
    "The on-call rotation changes on Mondays.",
]


async def remember_all(store: Any, namespace: str = "acme") -> None:
    for i, text in enumerate(FACTS):
        await store.remember(NewMemory(namespace, text), now=100.0 + i)


async def test_the_store_is_a_memory_store(store: Any) -> None:
    assert isinstance(store, MemoryStore)


async def test_search_finds_the_fact_with_the_words_asked_for(store: Any) -> None:
    await remember_all(store)
    hits = await store.search_memory("acme", "when are deploys frozen?")
    assert hits[0].record.text == FACTS[2]
    # Stemming: "rotating" finds "rotation"; ranking puts the better match first.
    hits = await store.search_memory("acme", "who is rotating on call")
    assert hits[0].record.text == FACTS[3]
    assert hits == sorted(hits, key=lambda h: -h.score)


async def test_search_syntax_in_a_query_is_only_words(store: Any) -> None:
    await remember_all(store)
    # FTS5 operators and quotes from a model's query do not raise or change the meaning.
    hits = await store.search_memory("acme", 'staging" OR NEAR(x) AND -"database*')
    assert hits[0].record.text == FACTS[0]
    assert await store.search_memory("acme", "?!  ...") == []
    assert await store.search_memory("acme", "kubernetes") == []


async def test_tenants_never_see_each_others_facts(store: Any) -> None:
    await remember_all(store, "acme")
    await store.remember(NewMemory("globex", "Globex deploys on Fridays."), now=1.0)
    assert [h.record.namespace for h in await store.search_memory("acme", "deploys")] == ["acme"]
    globex = await store.search_memory("globex", "deploys frozen december")
    assert [h.record.text for h in globex] == ["Globex deploys on Fridays."]
    assert not await store.forget("globex", (await store.list_memory("acme"))[0].id)


async def test_a_key_makes_a_write_happen_once(store: Any) -> None:
    first, created = await store.remember(NewMemory("acme", "fact one", key="run:3:c1"), now=1.0)
    again, created_again = await store.remember(
        NewMemory("acme", "fact one", key="run:3:c1"), now=2.0
    )
    assert created and not created_again
    assert again == first
    assert len(await store.list_memory("acme")) == 1
    # The same key in another tenant is another write.
    _, other = await store.remember(NewMemory("globex", "fact one", key="run:3:c1"), now=3.0)
    assert other


async def test_tags_filter_and_are_searchable(store: Any) -> None:
    await store.remember(NewMemory("acme", "Invoices are due in 30 days.", ("billing",)), now=1.0)
    await store.remember(NewMemory("acme", "Invoices of staff are due at once.", ("hr",)), now=2.0)
    billing = await store.search_memory("acme", "invoices due", tags=["billing"])
    assert [h.record.tags for h in billing] == [("billing",)]
    assert [h.record.text for h in await store.search_memory("acme", "hr")] == [
        "Invoices of staff are due at once."
    ]


async def test_list_forget_and_index_stay_in_step(store: Any) -> None:
    await remember_all(store)
    listed = await store.list_memory("acme")
    assert [r.text for r in listed] == FACTS[::-1]  # newest first
    assert await store.forget("acme", listed[-1].id)
    assert await store.search_memory("acme", "staging database") == []
    assert not await store.forget("acme", listed[-1].id)


async def test_facts_survive_reopening(store_url: str) -> None:
    async with Store.from_url(store_url) as first:
        await remember_all(first)
    async with Store.from_url(store_url) as second:
        hits = await second.search_memory("acme", "bullet lists")
        assert [h.record.text for h in hits] == [FACTS[1]]
