"""``python -m mfg_pde``: see :mod:`mfg_pde._cli`."""

from mfg_pde._cli import main

raise SystemExit(main())
