"""The service's one configuration object: :class:`Settings`, read from ``LWMECPS_*`` environment variables.

Secrets are :class:`pydantic.SecretStr` (their ``repr``/``str`` print ``**********``). When ``jwt_secret`` or
``fernet_key`` is not given, one is generated once and persisted under ``data_dir`` with mode 0600, so tokens and
encrypted credentials stay valid across restarts. ``storage_root`` defaults to ``<data_dir>/storage``.

``get_settings()`` returns the process-wide instance (cached); tests build their own with :meth:`Settings.explicit`,
which ignores the environment.
"""

from __future__ import annotations

import base64
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".lwmecps"
JWT_SECRET_FILE = "jwt_secret"
FERNET_KEY_FILE = "fernet_key"


def _prefixed_or_plain(name: str) -> AliasChoices:
    """Accept ``LWMECPS_<NAME>`` and, for the well-known URLs, the plain ``<NAME>`` too."""
    return AliasChoices(f"lwmecps_{name}", name)


class Settings(BaseSettings):
    """Service settings. Environment: ``LWMECPS_<FIELD>`` (``MONGODB_URI`` / ``REDIS_URL`` also accepted plain)."""

    model_config = SettingsConfigDict(env_prefix="LWMECPS_", extra="ignore", populate_by_name=True)

    mongodb_uri: str | None = Field(default=None, validation_alias=_prefixed_or_plain("mongodb_uri"))
    """None: start the embedded nx-27017 wire server with data under ``<data_dir>/mongo``."""
    mongodb_db: str = Field(default="lwmecps", pattern=r"^[a-z0-9_]{1,63}$")
    data_dir: Path = DEFAULT_DATA_DIR
    storage_root: str = ""
    """Model artifacts: a local path or a cloud URI (``s3://...``); empty -> ``<data_dir>/storage``."""
    jwt_secret: SecretStr | None = None
    jwt_ttl_s: int = Field(default=3600, gt=0)
    admin_username: str = Field(default="admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    admin_password: SecretStr | None = None
    """None: the bootstrap admin gets a generated password written to ``<data_dir>/admin_password`` (0600)."""
    fernet_key: SecretStr | None = None
    wandb_mode: Literal["online", "offline", "disabled"] = "offline"
    redis_url: str | None = Field(default=None, validation_alias=_prefixed_or_plain("redis_url"))
    otlp_endpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    ray_address: str | None = None
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    reconcile_period_s: float = Field(default=5.0, gt=0)

    @classmethod
    def explicit(cls, **values: Any) -> Settings:
        """Settings from exactly these values and the defaults; the environment and ``.env`` are not read."""
        return _ExplicitSettings(**values)

    @model_validator(mode="after")
    def _fill_generated(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if not self.storage_root:
            self.storage_root = str(self.data_dir / "storage")
        if self.jwt_secret is None:
            self.jwt_secret = SecretStr(_persisted_secret(self.data_dir / JWT_SECRET_FILE, secrets.token_urlsafe(48)))
        if self.fernet_key is None:
            key = base64.urlsafe_b64encode(os.urandom(32)).decode()
            self.fernet_key = SecretStr(_persisted_secret(self.data_dir / FERNET_KEY_FILE, key))
        return self

    def jwt_key(self) -> str:
        assert self.jwt_secret is not None  # filled by the validator
        return self.jwt_secret.get_secret_value()

    def fernet_secret(self) -> str:
        assert self.fernet_key is not None  # filled by the validator
        return self.fernet_key.get_secret_value()

    @property
    def local_storage(self) -> Path | None:
        """``storage_root`` as a local directory, or None when it is a cloud URI."""
        root = self.storage_root
        if root.startswith("file://"):
            return Path(root.removeprefix("file://"))
        return None if "://" in root else Path(root).expanduser()


class _ExplicitSettings(Settings):
    """Settings whose only source is the constructor's arguments."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _persisted_secret(path: Path, fresh: str) -> str:
    """The secret stored in ``path``; when there is none, store ``fresh`` there (mode 0600) and return it."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(fresh + "\n")
    return fresh


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), replacing any old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment (``get_settings.cache_clear()`` re-reads)."""
    return Settings()
