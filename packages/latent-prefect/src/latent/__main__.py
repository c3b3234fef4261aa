"""`python -m latent`: the `latent` command (works with `latent` as a PEP 420 namespace)."""

from latent.prefect.cli import main

main()
