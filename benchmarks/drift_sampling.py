"""What schema-drift sampling (issue 14, item 2; worker/source/fields.py) costs a record, next
to what decoding it and building its row cost, on the simulator's orders (about 2 KB each).

    .venv/bin/python -m benchmarks.drift_sampling

Prints microseconds per record: every record walked (what sampling avoids), the sample a run
takes (a page's first record and every EVERY-th), and the decoder plus the row builder (the rest
of a record's CPU in a sync). Not part of `make bench`: a one-off measure behind a design choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from worker.clock import utcnow
from worker.simulator.config import RESOURCES
from worker.simulator.data import Dataset
from worker.source import fields
from worker.source.fields import Shape
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.warehouse.rows import RowBuilder

RECORDS = 5000
PAGE = 50
ROUNDS = 5


def _per_record(work: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / RECORDS * 1e6


def main() -> None:
    sizes = {name: 1 for name in RESOURCES} | {"orders": RECORDS}
    blobs = [msgspec.json.encode(r) for r in Dataset(sizes, seed=1).dump("orders")]
    decoder = Decoder(REGISTRY["orders"])
    records = [decoder.record(blob, "bench") for blob in blobs]
    pages = [records[i : i + PAGE] for i in range(0, RECORDS, PAGE)]
    builder = RowBuilder(REGISTRY["orders"], postgres=True)

    def sampled() -> None:
        shape = Shape()
        for page in pages:
            shape.sample(page)

    def walked() -> None:
        every, fields.EVERY = fields.EVERY, 1
        try:
            sampled()
        finally:
            fields.EVERY = every

    def decoded() -> None:
        for page in pages:
            builder.rows([decoder.record(r.raw.encode(), "bench") for r in page], utcnow())

    print(f"orders: {RECORDS} records of {sum(map(len, blobs)) // RECORDS} bytes, pages of {PAGE}")
    print(f"every record walked:           {_per_record(walked):6.2f} us/record")
    print(f"sampled (1st + every {fields.EVERY}th):    {_per_record(sampled):6.2f} us/record")
    print(f"decoder + row builder:         {_per_record(decoded):6.2f} us/record")


if __name__ == "__main__":
    main()
