"""latent.cache: stable hashing, code signatures, cache keys, a disk cache and checkpoints.

Installs and imports alone: no Prefect, MLflow, pandas or numpy is imported here (numpy and
pandas are used only when a value to hash is one of theirs).
"""

from latent.cache._faults import write_fault
from latent.cache.checkpoint import (
    checkpoint,
    checkpoints_enabled,
    checkpoints_for,
    clear_checkpoints,
    configure_checkpoints,
)
from latent.cache.errors import (
    CacheEntryWarning,
    CacheWriteError,
    SettingsError,
    SettingsFileError,
    UncacheableValueError,
    UnhashableError,
)
from latent.cache.fingerprint import fingerprint_file, fingerprint_paths
from latent.cache.hashing import register_hasher, stable_hash
from latent.cache.keys import file_cache_key, hash_once, row_cache_key
from latent.cache.memoize import cached
from latent.cache.signature import (
    code_signature,
    qualified_name,
    set_module_namer,
    signature_parts,
)
from latent.cache.store import MISSING, CacheEntry, CacheStore, shared_store

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "CacheEntry",
    "CacheEntryWarning",
    "CacheStore",
    "CacheWriteError",
    "SettingsError",
    "SettingsFileError",
    "UncacheableValueError",
    "UnhashableError",
    "cached",
    "checkpoint",
    "checkpoints_enabled",
    "checkpoints_for",
    "clear_checkpoints",
    "code_signature",
    "configure_checkpoints",
    "file_cache_key",
    "fingerprint_file",
    "fingerprint_paths",
    "hash_once",
    "qualified_name",
    "register_hasher",
    "row_cache_key",
    "set_module_namer",
    "shared_store",
    "signature_parts",
    "stable_hash",
    "write_fault",
]
