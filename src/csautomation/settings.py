"""Settings from the environment: every CSAUTO_* variable the engine reads is a field here,
built once at the edge (csautomation.bootstrap) and passed down.

Credentials of connectors and signal sources are not here: their files name the variables
that hold them (connectors/, sources.yaml), read where the connector is built."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from csautomation.config.duration import Duration


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CSAUTO_", extra="ignore")

    # default: SQLite in the data folder
    database_url: str = ""
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    data_dir: Path = Path(".csauto")
    rules_path: Path = Path("rules")
    playbooks_path: Path = Path("workflows")
    connectors_path: Path = Path("connectors")
    escalation_matrix_path: Path = Path("escalation_matrix.yaml")
    people_path: Path = Path("people.yaml")
    sources_path: Path = Path("sources.yaml")
    schedules_path: Path = Path("schedules.yaml")
    # where the review page is reached, for the links in escalation notifications
    review_url: str = "http://127.0.0.1:8000"
    # `csauto dev`: the review page's port on 127.0.0.1
    dev_port: int = 8000
    health_model_path: Path | None = None
    # run workflow code in Temporal's sandbox in production workers too (slower; the tests
    # and replays always do)
    workflow_sandbox: bool = False
    # `worker`, `pipeline`, `scheduler run`: serve /metrics and /health/live on this port
    # (unset: no server); all interfaces unless CSAUTO_METRICS_HOST narrows it
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    # Temporal's OpenTelemetry TracingInterceptor on every client (pip install
    # 'csautomation[otel]'); the exporter is configured by the standard OTEL_* variables
    otel: bool = False
    # DEBUG, INFO, WARNING or ERROR overrides each command's log level; log_format "json":
    # one JSON object a line (logs.py). Other values are ignored.
    log_level: str = ""
    log_format: str = ""
    # the bundled Temporal dev server's own log level (csauto dev, the demo)
    temporal_log_level: str = "error"
    # signs the review page's session cookies; unset: a random key a process (sessions end
    # when it stops). At least 32 characters (api/auth.py)
    session_secret: SecretStr | None = None
    # signals are refused at the door (the API, `csauto ingest`) when they happened before
    # this day (UTC) or further ahead of now than this duration (README, "What is accepted")
    signal_earliest: date = Field(default=date(2000, 1, 1), ge=date(1900, 1, 1))
    signal_max_ahead: Duration = Field(default=timedelta(days=1), le=timedelta(days=3650))

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir}/csauto.db"
        return self
