"""Errors raised by latent.cache, each saying what happened, where, and how to fix it."""

from __future__ import annotations

__all__ = [
    "CacheEntryWarning",
    "CacheWriteError",
    "SettingsError",
    "SettingsFileError",
    "UncacheableValueError",
    "UnhashableError",
]


class UnhashableError(TypeError):
    """Raised when a value has no stable hash (its digest would differ between processes).

    ``type_name`` is the fully qualified type; ``path`` says where inside the hashed value the
    object sits (``"args[0]['client']"``), or ``""`` when it is the value itself. It subclasses
    ``TypeError`` so code that expects the stdlib error for "wrong kind of value" still works.
    """

    def __init__(self, type_name: str, path: str = "", reason: str = "") -> None:
        self.type_name = type_name
        self.path = path
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" at {self.path}" if self.path else ""
        short = self.type_name.rsplit(".", 1)[-1]
        why = self.reason or "no stable hasher is known for this type"
        return (
            f"Cannot hash object of type '{self.type_name}' stably{where}: {why}. "
            f"Register one with latent.cache.register_hasher({short}, fn) where fn returns bytes "
            f"or str identifying the value, make it a dataclass or pydantic model, pass it as "
            f"data rather than as an argument, or turn caching off for this task (cache=False)."
        )

    def prefixed(self, prefix: str) -> UnhashableError:
        """Return the same error with ``prefix`` put in front of its path (used while unwinding)."""
        self.path = prefix + self.path
        self.args = (self._message(),)
        return self

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.path, self.reason))


class UncacheableValueError(TypeError):
    """Raised by ``CacheStore.set`` when a value cannot be pickled, so it cannot be stored.

    The decorators catch it, warn, and return the computed value uncached: a result the user
    waited for is never thrown away because the cache could not keep it.
    """

    def __init__(self, key: str, type_name: str, cause: str) -> None:
        self.key = key
        self.type_name = type_name
        super().__init__(
            f"Cannot store the value for cache key {key!r}: an object of type '{type_name}' "
            f"cannot be pickled ({cause}). Return plain data (dicts, lists, dataclasses, "
            f"DataFrames) from cached functions, or turn caching off for this function."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.type_name, str(self.__cause__ or "")))


class CacheEntryWarning(UserWarning):
    """Warned when a stored entry cannot be read back (truncated file, class renamed or moved).

    The entry is removed and the call is treated as a miss, so the value is simply recomputed.
    """


class SettingsError(ValueError):
    """Raised when a setting latent-cache reads itself has a value it does not accept
    (``LATENT_ENVIRONMENT=staging``); the message names the variable and the values it takes."""


class SettingsFileError(SettingsError):
    """Raised when ``config/latent.toml`` cannot be read, or its ``environment`` is not one
    Latent knows, while deciding whether checkpoints run."""

    def __init__(self, path: str, cause: str) -> None:
        self.path = path
        super().__init__(
            f"Cannot read the Latent settings file {path}: {cause}. Fix the file, or set "
            f"LATENT_ENVIRONMENT=dev|production to decide without it."
        )


class CacheWriteError(OSError):
    """Raised when the cache directory cannot be written: disk full, quota, read-only, no access.

    Retrying cannot help (so latent-prefect does not retry a task that raised it), and nothing
    half-written is left behind. ``path`` is the cache directory, ``reason`` the fault in words;
    ``errno`` is the operating system's code when known. The message says what to change.
    """

    def __init__(self, path: str, reason: str, code: int | None = None, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        fix = "Free space there" if "full" in reason or "limit" in reason else "Make it writable"
        message = (
            f"Cannot write to the cache directory {path}: {reason}"
            f"{f' ({detail})' if detail else ''}. {fix}, or move Latent's state elsewhere: "
            f"latent_dir in the paths table of config/latent.toml ([paths] latent_dir; the cache "
            f"is <latent_dir>/cache), or directory= on @checkpoint/@cached/CacheStore."
        )
        if code is not None:
            super().__init__(code, message)
        else:
            super().__init__(message)
        self.filename = path

    def __str__(self) -> str:
        return str(self.args[-1])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.reason, self.errno, self.detail))
