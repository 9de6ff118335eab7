"""``python -m tune_configs <preset> [options]``."""

from tune_configs.cli import main

raise SystemExit(main())
