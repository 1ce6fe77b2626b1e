"""``python -m worker`` is ``rosesync``."""

from worker.cli import main

main()
