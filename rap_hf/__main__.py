"""`python -m rap_hf ...` is `rap-hf ...`; this is the module ``accelerate launch -m rap_hf score ...`` runs."""

from rap_hf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
