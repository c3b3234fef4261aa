"""Errors raised by latent.registry."""

from __future__ import annotations


class RegistryFileError(ValueError):
    """A saved registry file cannot be read: not JSON, or not the shape `to_dict()` writes.

    The message names the file; delete it (it is rebuilt by the next run) or re-save it with
    `TaskRegistry.save()`.
    """
