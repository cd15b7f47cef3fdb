"""A sweep's plan: which examples go together in which batch, and who computes each batch.

Examples are grouped by input shape (sorted), each group cut into batches of ``batch`` in
listing order, and batch ``b`` belongs to process ``b mod P``.  The plan depends only on the
listing and ``batch`` — not on devices or processes' progress — so every run of the same
configuration puts every example in the same batch at the same place, and a resumed batch
computes the very same program on the very same inputs.  One program is compiled per shape
group; the log says how many.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from jaxretina.sweep.inputs import Item

__all__ = ["Batch", "Plan", "make_plan"]


class Batch(NamedTuple):
    index: int                 # position in the plan
    shape: tuple[int, ...]     # the input shape of every member
    members: tuple[int, ...]   # example indices (at most the batch size; padded when computed)


class Plan(NamedTuple):
    batches: tuple[Batch, ...]
    groups: dict[tuple[int, ...], int]   # input shape -> number of examples
    problems: dict[int, str]             # example index -> why it is not computed

    def owned(self, process: int, processes: int) -> list[Batch]:
        return [b for b in self.batches if b.index % processes == process]


def make_plan(items: Sequence[Item], batch: int, rejected: dict[tuple[int, ...], str] | None = None) -> Plan:
    """Group ``items`` by shape and batch them; ``rejected`` maps shapes the model cannot take to
    the reason (every example of such a shape is a problem, not a batch member)."""
    rejected = rejected or {}
    groups: dict[tuple[int, ...], list[int]] = {}
    problems: dict[int, str] = {}
    for i, item in enumerate(items):
        if item.problem:
            problems[i] = item.problem
        elif item.shape in rejected:
            problems[i] = rejected[item.shape]
        else:
            groups.setdefault(tuple(item.shape), []).append(i)
    batches: list[Batch] = []
    for shape in sorted(groups):
        members = groups[shape]
        for start in range(0, len(members), batch):
            batches.append(Batch(len(batches), shape, tuple(members[start:start + batch])))
    return Plan(tuple(batches), {s: len(m) for s, m in sorted(groups.items())}, problems)
