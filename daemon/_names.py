"""Container names: Docker's rules, and random ``adjective_surname`` names."""

from __future__ import annotations

import random
import re

from rctr.core.errors import InvalidArgument

__all__ = ["check_name", "random_name"]

_VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = ["admiring", "brave", "clever", "eager", "focused", "gentle", "happy", "jolly",
         "keen", "lucid", "modest", "nifty", "quirky", "relaxed", "serene", "tender",
         "upbeat", "vibrant", "witty", "zealous", "bold", "calm", "dreamy", "elated"]
_RIGHT = ["turing", "hopper", "lovelace", "noether", "curie", "darwin", "euler", "gauss",
          "hypatia", "kepler", "lamarr", "meitner", "newton", "pascal", "ritchie", "shannon",
          "thompson", "torvalds", "wozniak", "yalow", "babbage", "bohr", "dijkstra", "knuth"]


def check_name(name: str) -> str:
    """The name without its leading slash; InvalidArgument if Docker would refuse it."""
    if not _VALID.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def random_name(taken: set[str]) -> str:
    for attempt in range(1000):
        name = f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
        if attempt > 10:
            name += str(random.randint(0, 99))
        if name not in taken:
            return name
    raise RuntimeError("no free container name")  # pragma: no cover
