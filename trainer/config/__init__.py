"""The run configuration: its schema (schema.py), settings resolved by name (settings.py), and what the environment
says (environment.py). `from trainer.config import Config, ...` names them all."""

from trainer.config.environment import (
    TrackerEnvironment,
    World,
    cache_dir,
    error_file,
    judge_api_key,
    preview_file,
    records_dir,
    serve_api_key,
    tracker_environment,
    ui_auth,
    world,
)
from trainer.config.schema import (
    DATE_STRING,
    FORMATS,
    LLAMA_TARGETS,
    METHODS,
    SDPA_BACKENDS,
    TRACKERS,
    Config,
    DataConfig,
    HardwareConfig,
    Launch,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from trainer.config.settings import KEYS, SETTINGS, build, check, coerce, flatten_toml, from_toml, full_key, parse_set

__all__ = [
    "DATE_STRING", "FORMATS", "KEYS", "LLAMA_TARGETS", "METHODS", "SDPA_BACKENDS", "SETTINGS", "TRACKERS", "Config",
    "DataConfig", "HardwareConfig", "Launch", "LoraConfig", "ModelConfig", "RunConfig", "TrackerEnvironment",
    "TrainConfig", "World", "build", "cache_dir", "check", "coerce", "error_file", "flatten_toml", "from_toml",
    "full_key", "judge_api_key", "parse_set", "preview_file", "records_dir", "serve_api_key", "tracker_environment",
    "ui_auth", "world",
]
