"""Per-project prices: a project's own price for a model."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from budget_service.schemas.common import (
    Model,
    Money,
    StrictModel,
    TokenCount,
)

# A price per token (or per web search request), in USD: the same bounds and exactness as Money.
Rate = Money


MAX_PRICE_TIERS = 16


class PriceTierIn(StrictModel):
    """A long-context tier: from a prompt over `above` tokens, these rates replace the base ones."""

    above: TokenCount
    input: Rate | None = None
    output: Rate | None = None
    cache_read: Rate | None = None
    cache_creation: Rate | None = None
    cache_creation_1h: Rate | None = None
    cache_creation_12h: Rate | None = None
    input_audio: Rate | None = None


class WebSearchPriceIn(StrictModel):
    low: Rate | None = None
    medium: Rate | None = None
    high: Rate | None = None


class PriceIn(StrictModel):
    """A project's own price for a model: the fields of the shipped table (USD per token; web
    search USD per request). Rates left out fall back as the table's do (cache and modality rates
    to the input rate, output-side rates to the output rate, TTL write rates to cache_creation).
    A price of 0 input and 0 output must say why it is free (`free`), as the table does."""

    provider: str | None = Field(
        default=None,
        max_length=64,
        description="the LiteLLM provider whose billing rules apply (xai, perplexity, gemini...);"
        " default: the provider of the table entry the model resolves to, if any",
    )
    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_creation: Rate | None = None
    cache_creation_1h: Rate | None = None
    cache_creation_12h: Rate | None = None
    reasoning: Rate | None = None
    input_audio: Rate | None = None
    output_audio: Rate | None = None
    cache_read_audio: Rate | None = None
    input_image: Rate | None = None
    output_image: Rate | None = None
    cache_read_image: Rate | None = None
    input_video: Rate | None = None
    output_video: Rate | None = None
    tiers: list[PriceTierIn] | None = Field(default=None, max_length=MAX_PRICE_TIERS)
    web_search: WebSearchPriceIn | None = None
    web_search_unit: Literal["per_query", "per_prompt"] | None = None
    free: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="why this model costs nothing (required for a 0/0 price)",
    )

    @model_validator(mode="after")
    def _free_on_purpose(self) -> PriceIn:
        if self.input == 0 and self.output == 0 and self.free is None:
            raise ValueError("a price of 0 input and 0 output must say why it is free (free: reason)")
        if self.tiers and len({t.above for t in self.tiers}) != len(self.tiers):
            raise ValueError("two tiers have the same threshold")
        return self


class PriceRecord(Model):
    project: str
    model: str
    price: dict = Field(description="the price as stored (the fields of PUT), numbers as JSON numbers")
    priced_as: str = Field(description="what priced_as shows for costs priced by it: project:<model>")
    created_at: str
    updated_at: str


class PriceList(Model):
    prices: list[PriceRecord]
