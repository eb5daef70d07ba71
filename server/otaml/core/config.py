"""All server settings, from OTAML_* environment variables (or a .env file)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from otaml.manifest import rules
from otaml.manifest.format import DEFAULT_CHANNEL, SUPPORTED_CHIPS

INSECURE_ADMIN_TOKEN = "changethis"
# The largest app slot of firmware/partitions.csv (ota_0 and ota_1, 0x1E0000 each): an image that does
# not fit a device's passive slot can never be installed, so publishing refuses it while it streams in.
# tests/server/test_body_limits.py keeps this equal to the partition table.
LARGEST_OTA_SLOT = 0x1E0000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OTAML_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("otaml-data")  # database, content-addressed binaries, static mirror
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""  # absolute base for `file` URLs; empty means http://HOST:PORT
    database_url: str = ""  # empty means sqlite:///DATA_DIR/otaml.db
    project: str = "otaml"  # esp_app_desc_t.project_name every published image must carry
    chip: str = "esp32"  # default target chip for publishing
    admin_token: str = INSECURE_ADMIN_TOKEN
    allow_legacy_clients: bool = False  # serve manifests to polls without device id and token
    poll_interval: int = Field(60, ge=5, le=86400)  # seconds, told to devices in X-Otaml-Poll-Interval
    checkin_flush_interval: float = Field(1.0, gt=0, le=60)  # seconds between batched check-in writes
    default_channel: str = DEFAULT_CHANNEL
    # Publish limit: the largest OTA slot of the fleet's partition table (raise it with the table).
    max_upload_bytes: int = Field(LARGEST_OTA_SLOT, ge=64 * 1024, le=16 * 1024 * 1024)
    upload_timeout: float = Field(600.0, gt=0, le=3600)  # seconds for a whole publish upload
    body_idle_timeout: float = Field(30.0, gt=0, le=600)  # seconds a request body may pause
    # The online key that signs desired-configuration documents (never the release key); created on
    # first start if missing. Empty means DATA_DIR/config-key.pem.
    config_key_path: Path | None = None
    rollout_eval_interval: float = Field(2.0, gt=0, le=300)  # seconds between rollout evaluations
    policy_ttl: float = Field(2.0, gt=0, le=60)  # seconds a process trusts its in-memory fleet policy
    # Let anyone who can reach /dashboard see it read-only (a wall display); actions still need the login.
    dashboard_public: bool = False
    dashboard_refresh: float = Field(2.0, ge=0.5, le=60)  # seconds between live updates of a page
    # Claims (POST /api/claim) a client address may make per minute; a factory line claims in bursts.
    claim_rate_per_minute: int = Field(30, ge=1, le=100_000)
    # Trust the repository's test keys outside development (test rigs and `release demo` only: their
    # private halves are public).
    allow_test_keys: bool = False
    # Fleet insight: history retention, /metrics, webhooks, housekeeping (ops/).
    history_minute_retention: float = Field(48.0, ge=2, le=24 * 30)  # hours of per-minute buckets
    history_hour_retention: float = Field(90.0, ge=7, le=3650)  # days of per-hour buckets
    device_history_retention: float = Field(7.0, ge=1, le=365)  # days of per-device hours
    audit_retention: float = Field(365.0, ge=1, le=3650)  # days of audit entries
    metrics_public: bool = False  # /metrics without the admin token (a scraper on a private network)
    webhook_backoff: float = Field(10.0, ge=0.1, le=3600)  # seconds before the first retry; doubles each time
    webhook_max_attempts: int = Field(8, ge=1, le=30)
    webhook_timeout: float = Field(5.0, gt=0, le=60)  # seconds per delivery attempt
    housekeeping_interval: float = Field(60.0, ge=0.2, le=3600)  # seconds between pruning and expiry checks
    # MQTT bridge (ops/mqtt.py): fleet events to the operator's broker; empty URL: off.
    mqtt_url: str = Field("", max_length=100)  # mqtt://HOST:PORT or mqtts://HOST:PORT (the devices' rule)
    mqtt_username: str = Field("", max_length=256)
    mqtt_password: str = Field("", max_length=256)
    mqtt_ca_file: Path | None = None  # the CA mqtts pins; empty: the system's
    mqtt_client_id: str = Field("", max_length=64)  # empty: otaml-server-<thread>-<start time>
    mqtt_prefix: str = "otaml/fleet"  # topics PREFIX/devices/ID/{state,events,ml} and PREFIX/rollouts/ID
    mqtt_queue: int = Field(10_000, ge=10, le=1_000_000)  # messages held while the broker is away; oldest dropped
    mqtt_qos: int = Field(1, ge=0, le=1)
    mqtt_reconnect_max: float = Field(60.0, ge=1, le=3600)  # seconds: reconnect backoff doubles from 1 s up to this
    # Proxies whose X-Forwarded-For names the client (comma-separated addresses or networks, * for any).
    forwarded_allow_ips: str = "127.0.0.1"

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Settings:
        if self.chip not in SUPPORTED_CHIPS:
            raise ValueError(f"OTAML_CHIP: expected one of {', '.join(SUPPORTED_CHIPS)}, got {self.chip!r}")
        if self.mqtt_url and not rules.mqtt_url_ok(self.mqtt_url):
            raise ValueError(f"OTAML_MQTT_URL: expected (mqtt|mqtts)://HOST(:PORT)? (credentials in OTAML_MQTT_USERNAME "
                             f"and OTAML_MQTT_PASSWORD), got {self.mqtt_url[:100]!r}")
        if not rules.mqtt_prefix_ok(self.mqtt_prefix):
            raise ValueError(f"OTAML_MQTT_PREFIX: expected topic levels [A-Za-z0-9._-]+ joined by single slashes "
                             f"(at most {rules.MAX_MQTT_PREFIX_BYTES} bytes), got {self.mqtt_prefix[:60]!r}")
        weak = self.admin_token == INSECURE_ADMIN_TOKEN or len(self.admin_token) < 16
        if weak:
            message = (
                "OTAML_ADMIN_TOKEN is the default or shorter than 16 characters; set a random one "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
            if self.environment != "development":
                raise ValueError(message + " - refused outside development")
            warnings.warn(message, stacklevel=2)
        return self

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def config_key_file(self) -> Path:
        return self.config_key_path or self.data_dir / "config-key.pem"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'otaml.db').resolve()}"
