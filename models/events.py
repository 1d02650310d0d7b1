"""Sample domain events for the demo pipeline (`streams.offline.demo_data` generates them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Currency = Literal["EUR", "USD", "GBP", "CHF", "JPY"]


class Payment(BaseModel):
    """A card payment. Extra fields pass through the validate step unchanged."""

    model_config = ConfigDict(extra="allow")

    payment_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    merchant: str
    amount: float
    currency: Currency
    ts: datetime
    country: str | None = None


class User(BaseModel):
    """A row of the `users` lookup table (for enrich)."""

    model_config = ConfigDict(extra="allow")

    user_id: str
    tier: Literal["basic", "gold", "platinum"]
    country: str
