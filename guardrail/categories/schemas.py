"""Category request and response bodies (Create / Update / Read)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

SLUG_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"


class CategoryExamples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positive: list[str] = Field(default_factory=list, max_length=20, description="Texts that violate it.")
    negative: list[str] = Field(default_factory=list, max_length=20, description="Look-alikes that do not.")


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SLUG_PATTERN, description="Slug, unique per tenant: a-z, 0-9, _ (2-64).")
    name: str = Field(min_length=1, max_length=100, description="Display name, usually Japanese.")
    definition: str = Field(min_length=5, max_length=1000, description="Used verbatim in the judge prompt.")
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    enabled: bool = True
    examples: CategoryExamples | None = None


class CategoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    definition: str | None = Field(None, min_length=5, max_length=1000)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    enabled: bool | None = None
    examples: CategoryExamples | None = None


class CategoryRead(BaseModel):
    id: str
    name: str
    definition: str
    threshold: float
    enabled: bool
    default: bool
    examples: CategoryExamples
    created_at: datetime
    updated_at: datetime
