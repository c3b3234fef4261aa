"""latent.registry: which flows ran which tasks on which datasets, and drawings of it."""

from latent.registry._registry import TaskRegistry
from latent.registry.errors import RegistryFileError

__all__ = ["RegistryFileError", "TaskRegistry"]
