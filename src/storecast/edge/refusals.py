"""Digests the device will not install for now, kept on disk so a restart remembers them.

A digest lands here when its bundle was rejected (until ``reject_backoff_s`` passes) or
when store IT rolled the device back from it by hand (until the registry assigns
something else). Either way the memory ends when the assignment changes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from storecast.common.files import atomic_write_bytes

__all__ = ["Refusals"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Refusal:
    until: datetime | None  # None: until the assignment changes
    reason: str


class Refusals:
    """Refused digests for the current assignment, in ``path`` (JSON, written atomically)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._assigned: str | None = None
        self._refused: dict[str, _Refusal] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self._path.read_bytes())
            self._assigned = data["assigned"]
            self._refused = {
                digest: _Refusal(
                    datetime.fromisoformat(entry["until"]) if entry["until"] else None,
                    str(entry["reason"]),
                )
                for digest, entry in data["refused"].items()
            }
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s is unreadable; starting with no refused digests", self._path)
            self._assigned, self._refused = None, {}

    def _save(self) -> None:
        data = {
            "assigned": self._assigned,
            "refused": {
                digest: {
                    "until": r.until.isoformat() if r.until else None,
                    "reason": r.reason,
                }
                for digest, r in self._refused.items()
            },
        }
        atomic_write_bytes(self._path, json.dumps(data, indent=1).encode())

    def assigned(self, digest: str | None) -> None:
        """The registry now assigns ``digest``: a different one clears every refusal."""
        if digest == self._assigned:
            return
        self._assigned = digest
        self._refused.clear()
        self._save()

    def refuse(self, digest: str, until: datetime | None, reason: str) -> None:
        """Do not install ``digest`` before ``until`` (None: until the assignment changes)."""
        self._refused[digest] = _Refusal(until, reason)
        self._save()

    def refused(self, digest: str, now: datetime) -> str | None:
        """Why ``digest`` is refused at ``now``, or None when it may be installed."""
        refusal = self._refused.get(digest)
        if refusal is None or (refusal.until is not None and now >= refusal.until):
            return None
        return refusal.reason
