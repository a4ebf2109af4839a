"""make bench rewrites docs/PERFORMANCE.md but keeps the varied-traffic block it holds."""

from __future__ import annotations

from pathlib import Path

from bench.read_bench import keep_varied_traffic
from bench.varied_bench import END, START


def test_the_varied_traffic_block_survives_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "PERFORMANCE.md"
    block = f"{START}\n## A million products\np95 9 ms\n{END}"
    path.write_text(f"# Performance\n\nold figures\n\n{block}\n")
    rewritten = keep_varied_traffic(path, "# Performance\n\nnew figures\n")
    assert "old figures" not in rewritten
    assert rewritten.startswith("# Performance\n\nnew figures\n")
    assert block in rewritten


def test_without_a_block_or_a_file_the_new_text_is_all(tmp_path: Path) -> None:
    path = tmp_path / "PERFORMANCE.md"
    assert keep_varied_traffic(path, "new\n") == "new\n"
    path.write_text("no block here\n")
    assert keep_varied_traffic(path, "new\n") == "new\n"
