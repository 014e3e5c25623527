"""``python -m diffusion_pde.cli ...``: the same as the ``diffusion-pde`` command."""

from . import main

raise SystemExit(main())
