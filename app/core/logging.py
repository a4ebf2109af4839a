"""Structured logging: one JSON object per line (or coloured console lines for humans).

Stdlib loggers (uvicorn, sqlalchemy, alembic) go through the same structlog formatter, so
every line has the same shape. The request middleware starts a request context with the
request id (the user id joins it once known), which `merge_request_context` adds to each line
logged while the request runs.

The access line, one per request, is the busiest line by far: in JSON it is written by
`write_access_line` straight to stderr, where the root handler writes too, through the same
processors (request context, level, logger name, time, redaction) but without the standard
library's record, handler lock and formatter copy per line, which cost a tenth of a hot read.
In console format it goes through the logger like any other line.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import re
import sys
from contextvars import ContextVar
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
# One cheap search tells whether a value needs either substitution (most never do).
_MAY_HOLD_SECRET = re.compile(r"bearer|://", re.I)


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEYS.search(key) is not None


def _scrub(value: str) -> str:
    if _MAY_HOLD_SECRET.search(value) is None:
        return value
    return _DSN_PASSWORD.sub(r"\1***@", _BEARER.sub(r"\1[redacted]", value))


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Drop values of secret-looking keys and scrub bearer tokens and DSN passwords."""
    for key, value in event_dict.items():
        if _is_secret_key(key):
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = _scrub(value)
    return event_dict


def redact_exception(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """A formatted traceback may quote a DSN or a token."""
    exception = event_dict.get("exception")
    if isinstance(exception, str):
        event_dict["exception"] = _scrub(exception)
    return event_dict


def drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn passes an ANSI-coloured copy of its message as an extra; the event says it."""
    event_dict.pop("color_message", None)
    return event_dict


# One dict per request, not one context variable per key: structlog's contextvars copy the
# whole context on every bind, clear and merge, several times per request.
_request_context: ContextVar[dict[str, Any] | None] = ContextVar("request_context", default=None)


def start_request_context(**values: Any) -> None:
    _request_context.set(values)


def bind_request_context(**values: Any) -> None:
    """Add to the current request's context (nothing outside a request)."""
    context = _request_context.get()
    if context is not None:
        context.update(values)


def end_request_context() -> None:
    _request_context.set(None)


def merge_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = _request_context.get()
    if context:
        for key, value in context.items():
            event_dict.setdefault(key, value)
    return event_dict


_timestamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="time")
_access_logger = logging.getLogger("app.access")
_access_json = True


def write_access_line(**fields: Any) -> None:
    """The request's access line: what `get_logger("app.access").info("request", **fields)`
    writes, written straight to stderr in JSON (see the module's docstring)."""
    if not _access_logger.isEnabledFor(logging.INFO):
        return
    if not _access_json:
        get_logger("app.access").info("request", **fields)
        return
    event: EventDict = {**fields, "event": "request"}
    merge_request_context(None, "", event)
    event["level"] = "info"
    event["logger"] = "app.access"
    _timestamp(None, "", event)
    redact(None, "", event)
    sys.stderr.write(_json_line(event) + "\n")


def _json_line(event_dict: EventDict, **_: Any) -> str:
    return orjson.dumps(event_dict, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    global _access_json
    _access_json = fmt == "json"
    shared: list[Any] = [
        merge_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        structlog.stdlib.ExtraAdder(),
        drop_color_message,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structured": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "foreign_pre_chain": shared,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        redact_exception,
                        renderer,
                    ],
                }
            },
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structured"}},
            "root": {"handlers": ["default"], "level": level.upper()},
            "loggers": {
                # Our middleware writes the access line; uvicorn's own would repeat it.
                "uvicorn.access": {"handlers": [], "propagate": False},
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                # Alembic 1.17+ announces each of its autogenerate plugins at INFO on every run.
                "alembic.runtime.plugins": {"level": "WARNING"},
            },
        }
    )
    structlog.configure(
        # filter_by_level first: below the level, skip every other processor.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
