"""The varied-traffic benchmark draws the same requests for a seed, of every kind, and writes
its report block into docs/PERFORMANCE.md without touching the rest of the file."""

from __future__ import annotations

from urllib.parse import parse_qsl

from bench import varied_bench
from bench.varied_bench import SORTS, requests
from bench.varied_report import END, FAMILIES, START, Timing, splice, summary

CATEGORIES = list(range(1, 30))


def test_the_same_seed_draws_the_same_requests_and_another_seed_others() -> None:
    first = requests(3, 200, CATEGORIES)
    assert first == requests(3, 200, CATEGORIES)
    assert first != requests(4, 200, CATEGORIES)


def test_every_family_every_sort_and_limits_within_20_to_100() -> None:
    drawn = requests(7, 120, CATEGORIES)
    families = {r.family for r in drawn}
    assert families == set(FAMILIES) - {"cursor"}
    assert any(r.follow > 0 for r in drawn)  # cursor pages follow some of them
    params = [dict(parse_qsl(r.query())) for r in drawn]
    assert {p["sort"] for p in params if "sort" in p} == set(SORTS)
    for family in ("search + sort", "filters + sort", "sort"):
        assert {dict(parse_qsl(r.query())).get("sort") for r in drawn if r.family == family} == set(
            SORTS
        ), family
    limits = [int(p["limit"]) for p in params]
    assert min(limits) >= 20
    assert max(limits) <= 100
    assert len(set(limits)) > 20


def test_families_carry_their_parameters() -> None:
    for request in requests(11, 90, CATEGORIES):
        names = [name for name, _ in request.params]
        assert ("q" in names) == request.family.startswith("search"), request
        filtered = request.family in ("search + filters", "filters", "filters + sort")
        assert ("category_id" in names) == filtered, request
        if request.family == "tags":
            assert 1 <= names.count("tag") <= 3
        if request.family == "price range":
            assert {"min_price", "max_price"} & set(names)
        if request.family == "search":
            assert "sort" not in names  # ranked by relevance


def test_words_come_from_the_demo_vocabulary() -> None:
    words = set(varied_bench.vocabulary())
    assert {"titanium", "wireless", "acme", "headphones", "navy"} <= words
    for request in requests(5, 80, CATEGORIES):
        q = dict(request.params).get("q")
        if q is not None:
            pairs = {f"{a} {b}" for a in words for b in words}
            assert q in words or q in pairs, q


def test_splice_replaces_only_its_block() -> None:
    document = f"# Performance\n\nintro\n\n{START}\nold figures\n{END}\n\n## After\n\ntail\n"
    updated = splice(document, "## Varied\n\nnew figures\n")
    assert updated == (
        f"# Performance\n\nintro\n\n{START}\n## Varied\n\nnew figures\n{END}\n\n## After\n\ntail\n"
    )
    assert splice(updated, "again") == updated.replace("## Varied\n\nnew figures", "again")


def test_splice_appends_the_block_when_absent() -> None:
    document = "# Performance\n\nwritten by read_bench\n"
    updated = splice(document, "figures")
    assert updated == f"# Performance\n\nwritten by read_bench\n\n{START}\nfigures\n{END}\n"


def test_summary_percentiles_per_family() -> None:
    timings = [Timing("search", "q=a", float(ms), 20) for ms in range(1, 101)]
    timings.append(Timing("tags", "tag=eco", 150.0, 20))
    rows = {row.family: row for row in summary(timings)}
    assert rows["search"].p95 == 95.0
    assert rows["search"].max == 100.0
    assert rows["search"].count == 100
    assert rows["overall"].max == 150.0
    assert rows["overall"].count == 101
    assert not rows["tags"].meets
    assert "cursor" not in rows  # no requests, no row
