from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from app.db import bootstrap


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """A database name on the test server that does not exist yet; dropped afterwards."""
    url = make_url(database_url).set(database=f"catalog_cli_{uuid.uuid4().hex[:8]}")
    rendered = url.render_as_string(hide_password=False)
    yield rendered
    asyncio.run(bootstrap.drop_database(rendered))
