"""Settings from the environment (CSAUTO_*), built once at the edge and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CSAUTO_", extra="ignore")

    database_url: str = "sqlite:///.csauto/csauto.db"
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    data_dir: Path = Path(".csauto")
    rules_path: Path = Path("rules")
    playbooks_path: Path = Path("workflows")
    health_model_path: Path | None = None
