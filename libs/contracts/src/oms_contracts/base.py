"""Base of every contract model: frozen, tolerant of fields added by newer producers."""

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
