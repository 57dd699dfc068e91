"""``python -m storecast``: the same as the ``storecast`` command."""

from storecast.cli import main

main()
