"""Run :func:`hw_mocks.virtual_card.cli.main`."""

from hw_mocks.virtual_card.cli import main

raise SystemExit(main())
