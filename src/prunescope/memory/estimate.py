"""What an estimate is: the terms a job holds at its worst moment, plus the runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prunescope.memory.sizes import MB, RUNTIME_BYTES


@dataclass(frozen=True)
class Term:
    """Bytes one thing a job holds takes, what it is (with the sizes), and the keys that size it."""

    what: str
    bytes: int
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    """A job's peak resident memory: its terms at the worst moment, plus the runtime."""

    rule: str
    subject: str
    terms: tuple[Term, ...]

    @property
    def sized_bytes(self) -> int:
        """The bytes the config's sizes drive, without the runtime."""
        return sum(term.bytes for term in self.terms)

    @property
    def bytes(self) -> int:
        return self.sized_bytes + RUNTIME_BYTES

    @property
    def mem_mb(self) -> int:
        return math.ceil(self.bytes / MB)

    @property
    def job(self) -> str:
        return f"{self.rule} for {self.subject}"

    def largest(self) -> Term:
        return max(self.terms, key=lambda term: term.bytes)

    def keys(self) -> list[str]:
        """What to lower: the keys of the largest term and of any term at least a quarter of
        its size, largest first, at most three."""
        largest = self.largest().bytes
        keys: list[str] = []
        for term in sorted(self.terms, key=lambda term: -term.bytes):
            if term.bytes >= largest / 4:
                keys += [key for key in term.keys if key not in keys]
        return keys[:3]


def peak(rule: str, subject: str, held: list[Term], *phases: list[Term]) -> Estimate:
    """What is held throughout plus the phase that needs the most on top of it."""
    worst = max(phases, key=lambda terms: sum(t.bytes for t in terms), default=[])
    return Estimate(rule, subject, tuple(t for t in (*held, *worst) if t.bytes > 0))
