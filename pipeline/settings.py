"""Typed settings of the pipeline, read from the environment (prefix LIENTHONG_) and `.env`."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from transforms.identity import KeyChain
from transforms.timefmt import LOCAL_TZ

# Used only by `lienthong demo` (and the tests): never a default of the real pipeline.
DEMO_PSEUDONYM_KEY = "lienthong-demo-key-not-for-production"


class MissingSetting(RuntimeError):
    """A setting the pipeline cannot run without."""


class PipelineSettings(BaseSettings):
    """Pipeline settings; every field can be set as LIENTHONG_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", env_file=".env", extra="ignore")

    pseudonym_key: SecretStr | None = Field(
        default=None, description="HMAC key for applicant ID numbers (required; no default)")
    pseudonym_key_previous: SecretStr | None = Field(
        default=None, description="the keys before pseudonym_key, oldest first, comma-separated "
                                  "(empty until the first `lienthong keys rotate-pseudonym`)")
    chunk_size: int = Field(default=5000, ge=1,
                            description="records read and transformed at once")
    page_size: int = Field(default=500, ge=1, le=1000, description="records asked per portal page")
    read_process: bool = Field(default=True,
                               description="read and transform a source in a process of its own (a second "
                                           "core), where its connector allows it; off: in a thread")
    gate_rows: int = Field(default=25_000, ge=1,
                           description="rows the quality gate validates at once (chunks are gathered to "
                                       "this many: each Great Expectations validation has a fixed cost)")
    lookback_minutes: int = Field(default=60, ge=0,
                                  description="incremental window starts this long before the watermark")
    initial_start: datetime = Field(default=datetime(2000, 1, 1, tzinfo=LOCAL_TZ),
                                    description="start of the first (full) sync when no watermark exists")
    max_quarantine_rate: float = Field(default=0.25, ge=0, le=1,
                                       description="a batch quarantining more than this share fails")
    http_timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    file_stable_seconds: float = Field(
        default=5.0, ge=0, description="a dropped file modified less than this long ago is still being "
                                       "written: not read this run, left in the drop folder")
    lock_wait_seconds: float = Field(
        default=0, ge=0, description="a sync of a stream another run is syncing waits this long for "
                                     "it, then is refused (0: refused at once; warehouse/locks.py)")
    warehouse_load_slots: int = Field(
        default=4, ge=0, description="batches written to the warehouse at once, by every DAG, worker "
                                     "and CLI together; a further one waits for a free slot (0: no cap)")
    load_slot_wait_seconds: float = Field(
        default=3600, ge=0, description="how long a batch waits for a free warehouse load slot before "
                                        "it is refused")

    def require_pseudonym_key(self) -> KeyChain:
        """The key chain in force: LIENTHONG_PSEUDONYM_KEY_PREVIOUS (oldest first), then
        LIENTHONG_PSEUDONYM_KEY; a clear error when the key is not configured. Messages name the
        variables, never a key."""
        if self.pseudonym_key is None or not self.pseudonym_key.get_secret_value():
            raise MissingSetting(
                "LIENTHONG_PSEUDONYM_KEY is not set: applicant ID numbers cannot be pseudonymised "
                "(set a secret key; `lienthong demo` uses a development key)")
        previous = self.pseudonym_key_previous.get_secret_value() if self.pseudonym_key_previous else ""
        keys = [key.strip() for key in previous.split(",")] if previous.strip() else []
        if any(not key for key in keys):
            raise MissingSetting("LIENTHONG_PSEUDONYM_KEY_PREVIOUS has an empty key: list the earlier "
                                 "keys oldest first, separated by commas")
        keys.append(self.pseudonym_key.get_secret_value())
        if len(set(keys)) != len(keys):
            raise MissingSetting("LIENTHONG_PSEUDONYM_KEY_PREVIOUS repeats a key, or holds "
                                 "LIENTHONG_PSEUDONYM_KEY itself: a rotation adds a new key")
        return KeyChain.of(keys)
