"""`python -m snakemake_singcontain` is the `singcontain` command."""

from .cli import main

raise SystemExit(main())
