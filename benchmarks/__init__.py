"""rosesync's benchmark suite (issues 7 and 16): ``make bench`` or ``python -m benchmarks --help``.

A simulator with a static dataset runs in its own process; each contender (a naive loader, the
simple loader, rosesync) runs in a process of its own against a fresh warehouse, so that wall
time, CPU and peak RSS are that contender's alone; every load is checked row for row count
before its figures count. See benchmarks/README.md.

Module map: ``__main__`` (options, output), ``scenarios`` (what runs and the targets),
``runner`` (one contender run), ``measure`` (process measurement), ``contenders`` (the
baselines), ``rosesync_contender``, ``simulator_process`` and ``simulators`` (the simulator's two
sides), ``databases`` (fresh warehouses), ``report`` (markdown and JSON).
"""
