"""`python -m latent.prefect`: the `latent` command."""

from latent.prefect.cli import main

main()
