"""Wall-clock time as the reports and metadata write it (UTC, seconds)."""

from __future__ import annotations

from datetime import datetime, timezone

def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
