"""`python -m latent.prefect.cli`: the `latent` command."""

from latent.prefect.cli import main

main()
