"""An adapter's settings, refused in predial's words: the key, a suggestion, what is
required, never the value (it may be a secret)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from predial import AdapterRegister, Campaign, ConfigurationError, Resolver, hookimpl


class Base:
    name = "base"

    def __init__(self, *, token: str, timeout: float = 5.0) -> None:
        self.token = token

    async def fetch_phone(self, external_id: str) -> str:
        return "+12025550123"


class Child(Base):
    """Its own settings, and the base's through **kwargs (as adapters on HttpAdapter)."""

    name = "child"

    def __init__(self, *, portal: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class Anything(Base):
    name = "anything"

    def __init__(self, **kwargs: Any) -> None:
        if "token" not in kwargs:
            raise TypeError("Anything() needs token")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str
    timeout: float = 5.0


class Validated(Base):
    name = "validated"

    def __init__(self, **settings: Any) -> None:
        Settings.model_validate(settings)


class Plugin:
    @hookimpl
    def register_adapters(self, register: AdapterRegister) -> None:
        for cls in (Child, Anything, Validated):
            register(cls)


def refusal(adapter: str, settings: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Resolver([Campaign("c", adapter, settings)], plugins=[Plugin()], load_entrypoints=False)
    message = str(caught.value)
    assert "s3cr3t-value" not in message
    return message


def test_a_misspelt_setting_is_named_with_the_closest_one_of_the_whole_chain() -> None:
    message = refusal("child", {"portal": "p", "tokn": "s3cr3t-value"})
    assert message.startswith(
        "Campaign('c').settings.tokn: adapter 'child' has no such setting; did you mean 'token'? "
        "(its settings: portal, token, timeout)"
    )
    assert "requires 'token'" not in message  # the suggestion already says it


def test_missing_required_settings_are_listed() -> None:
    message = refusal("child", {})
    assert message == "Campaign('c').settings: adapter 'child' requires 'portal' and 'token'"


def test_an_adapter_taking_anything_speaks_for_itself() -> None:
    message = refusal("anything", {"tokn": "s3cr3t-value"})
    assert message.endswith("rejected its settings: TypeError: Anything() needs token")


def test_a_pydantic_settings_model_s_errors_are_in_predial_s_words() -> None:
    message = refusal("validated", {"token": "s3cr3t-value", "timeout": "soon"})
    assert message.startswith("Campaign('c').settings.timeout: ")
    assert "[type=" not in message
    assert "pydantic.dev" not in message
