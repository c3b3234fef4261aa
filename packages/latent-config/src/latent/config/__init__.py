"""latent.config: project discovery, settings, parameters, typed config, ``params`` and the catalog.

Light to import: pydantic and pyyaml only; pandas, pyarrow and fsspec load when a dataset
needs them.
"""

from latent.config._params import params
from latent.config.catalog import Catalog
from latent.config.datasets import Dataset, register_dataset_type
from latent.config.errors import (
    ConfigFileError,
    ConfigValidationError,
    DatasetError,
    DatasetNotFoundError,
    FlowNotFoundError,
    LatentConfigError,
    MissingParameterError,
    MissingParameterKeyError,
    NoActiveFlowError,
    ParameterOverrideError,
    UnknownDatasetTypeError,
    UnknownParameterError,
)
from latent.config.project import Project, find_project_root
from latent.config.run import (
    RunConfig,
    bind_run,
    current_run,
    get_config,
    track_param_reads,
)
from latent.config.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "ConfigFileError",
    "ConfigValidationError",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "FlowNotFoundError",
    "LatentConfigError",
    "MissingParameterError",
    "MissingParameterKeyError",
    "NoActiveFlowError",
    "ParameterOverrideError",
    "Project",
    "RunConfig",
    "Settings",
    "UnknownDatasetTypeError",
    "UnknownParameterError",
    "bind_run",
    "current_run",
    "find_project_root",
    "get_config",
    "params",
    "register_dataset_type",
    "track_param_reads",
]
