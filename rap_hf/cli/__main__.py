"""`python -m rap_hf.cli`: the rap-hf command."""

from rap_hf.cli import main

raise SystemExit(main())
