"""``python -m worker`` is ``rrsync``."""

from worker.cli import main

main()
