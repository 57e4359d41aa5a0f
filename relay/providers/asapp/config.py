"""ASAPP AutoTranscribe settings (the ``[asapp]`` section, ``RELAY_ASAPP_*``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AsappSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
