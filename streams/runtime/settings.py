"""One frozen settings class; every field reads the environment variable named in it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults work out of the box: no variable set means the embedded broker on 127.0.0.1."""

    model_config = SettingsConfigDict(frozen=True, env_file=None, extra="ignore")

    # METASUP_BROKER: kafka://host:port of a real cluster; unset = start the embedded Tansu.
    broker: str | None = Field(default=None, alias="METASUP_BROKER")
    # METASUP_BROKER_PORT: port of the embedded broker (0 = any free port).
    broker_port: int = Field(default=9092, alias="METASUP_BROKER_PORT")
    # METASUP_DATA_DIR: the durable log, worker logs, operator keys and demo progress.
    data_dir: Path = Field(default=Path("var"), alias="METASUP_DATA_DIR")
    # METASUP_TOPIC_PREFIX: prepended to every topic (tests use one per test).
    topic_prefix: str = Field(default="", alias="METASUP_TOPIC_PREFIX")
    # METASUP_APP_ID: Faust app id, also the consumer group id.
    app_id: str = Field(default="metasup", alias="METASUP_APP_ID")
    # METASUP_WEB_HOST / METASUP_WEB_PORT: Faust's web server (dashboard, table views).
    web_host: str = Field(default="127.0.0.1", alias="METASUP_WEB_HOST")
    web_port: int = Field(default=6066, alias="METASUP_WEB_PORT")
    # METASUP_STORE: Faust table store; memory:// is the embedded default (see ARCHITECTURE).
    store: str = Field(default="memory://", alias="METASUP_STORE")
    # TRADING_MODE: shadow (default: orders are recorded, never routed) or live.
    trading_mode: Literal["shadow", "live"] = Field(default="shadow", alias="TRADING_MODE")
    # METASUP_OPERATOR_KEYS: "actor:hexsecret,..."; or METASUP_OPERATOR_KEYS_FILE (JSON).
    operator_keys: SecretStr | None = Field(default=None, alias="METASUP_OPERATOR_KEYS")
    operator_keys_file: Path | None = Field(default=None, alias="METASUP_OPERATOR_KEYS_FILE")
    # METASUP_SUPERVISOR_KEY_FILE: the supervisor's Ed25519 private key (PEM), only where the
    # supervisor (the workers, `metasup up`) runs; default <data_dir>/supervisor.key.
    supervisor_key_file: Path | None = Field(default=None, alias="METASUP_SUPERVISOR_KEY_FILE")
    # METASUP_SUPERVISOR_PUBLIC_KEY_FILE: its public key (PEM), what every reader verifies
    # governance facts with; default <data_dir>/supervisor.pub.
    supervisor_public_key_file: Path | None = Field(
        default=None, alias="METASUP_SUPERVISOR_PUBLIC_KEY_FILE"
    )
    # METASUP_PRICE_FEED: csv (demo/replay), binance (live polling, Coinbase fallback), none.
    price_feed: Literal["csv", "binance", "none"] = Field(default="csv", alias="METASUP_PRICE_FEED")
    binance_base_url: str = Field(default="https://api.binance.com", alias="BINANCE_BASE_URL")
    coinbase_base_url: str = Field(
        default="https://api.exchange.coinbase.com", alias="COINBASE_BASE_URL"
    )

    # METASUP_DASHBOARD_HOST / _PORT: the dashboard `metasup up` serves (loopback unless
    # told otherwise; a taken port means any free one, printed).
    dashboard_host: str = Field(default="127.0.0.1", alias="METASUP_DASHBOARD_HOST")
    dashboard_port: int = Field(default=8080, alias="METASUP_DASHBOARD_PORT")
    # METASUP_DASHBOARD_TOKEN: the bearer token of the dashboard's operator controls (from
    # the environment only; unset = controls disabled). METASUP_DASHBOARD_ACTOR: the
    # keyring actor whose key signs the commands the dashboard sends.
    dashboard_token: SecretStr | None = Field(default=None, alias="METASUP_DASHBOARD_TOKEN")
    dashboard_actor: str = Field(default="dashboard", alias="METASUP_DASHBOARD_ACTOR")

    # METASUP_SCHEDULES: the leader worker runs the report schedule (IC memo Sunday 12:00,
    # LP email 07:10, forensics 08:30 UTC); off for workers that must not send anything.
    schedules: bool = Field(default=True, alias="METASUP_SCHEDULES")
    # METASUP_SCHEDULE_CHECK_S: how often the leader looks for a due period nobody has run
    # (after downtime, or a crontab that fired on a worker that lost the lead).
    schedule_check_s: float = Field(default=60.0, gt=0, alias="METASUP_SCHEDULE_CHECK_S")

    @property
    def embedded(self) -> bool:
        return self.broker is None

    def bootstrap_servers(self, embedded_port: int | None = None) -> str:
        """host:port for Kafka clients; the embedded port is known only once the broker runs."""
        if self.broker is None:
            return f"127.0.0.1:{embedded_port or self.broker_port}"
        parsed = urlparse(self.broker)
        if parsed.scheme != "kafka" or not parsed.hostname:
            raise ValueError(f"METASUP_BROKER={self.broker!r} is not of the form kafka://host:port")
        return f"{parsed.hostname}:{parsed.port or 9092}"

    @property
    def group_id(self) -> str:
        """Faust app id = consumer group id; prefixed so tests never share a group."""
        return f"{self.topic_prefix}{self.app_id}"

    def keyring_source(self) -> str:
        """Where operator keys come from: the env var, the file, or data_dir/operator-keys.json."""
        if self.operator_keys is not None:
            return self.operator_keys.get_secret_value()
        path = self.operator_keys_file or self.data_dir / "operator-keys.json"
        return str(path) if path.exists() else ""

    def supervisor_key_path(self) -> Path:
        return self.supervisor_key_file or self.data_dir / "supervisor.key"

    def supervisor_public_key_path(self) -> Path:
        return self.supervisor_public_key_file or self.data_dir / "supervisor.pub"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
