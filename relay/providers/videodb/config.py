"""VideoDB settings (the ``[videodb]`` section, ``RELAY_VIDEODB_*``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class VideoDBSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
