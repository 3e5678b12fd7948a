"""`python -m specdec.orchestrator.cli`: the same as the `specdec` command."""

from specdec.orchestrator.cli.main import main

raise SystemExit(main())
