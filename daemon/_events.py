"""The event stream: what ``docker events`` shows, kept for ``since`` and fanned out live."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any

__all__ = ["Events"]


class Events:
    def __init__(self, keep: int = 1000) -> None:
        self._lock = threading.Lock()
        self._past: deque[dict[str, Any]] = deque(maxlen=keep)
        self._subscribers: list[queue.Queue[dict[str, Any]]] = []

    def emit(self, kind: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
        now = time.time_ns()
        event = {
            "Type": kind, "Action": action, "status": action, "id": actor_id,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local", "time": now // 1_000_000_000, "timeNano": now,
        }
        if kind == "container" and attributes and "image" in attributes:
            event["from"] = attributes["image"]
        with self._lock:
            self._past.append(event)
            for q in self._subscribers:
                q.put(event)

    def subscribe(self, since_ns: int | None = None) -> tuple[list[dict[str, Any]], queue.Queue[dict[str, Any]]]:
        """Past events at or after ``since_ns`` and a queue of what comes next."""
        q: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            past = [e for e in self._past if since_ns is not None and e["timeNano"] >= since_ns]
            self._subscribers.append(q)
        return past, q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            if q in self._subscribers:
                self._subscribers.remove(q)
