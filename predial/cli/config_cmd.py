"""`predial config validate`: check a predial.toml before a dialer relies on it."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import find_config, load_config
from ..resolver import Resolver
from ..shared import redacted_url
from .output import out_console

__all__ = ["config"]


@click.group()
def config() -> None:
    """Work with predial.toml."""


@config.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def validate(path: Path | None) -> None:
    """Validate PATH (default: $PREDIAL_CONFIG, then ./predial.toml) and build every
    campaign's adapter, so a typo or a missing variable shows now, not at dial time."""
    file = find_config(path)
    loaded = load_config(file)
    resolver = Resolver.from_config(file, strict=True)
    resolver.close_sync()
    campaigns = ", ".join(f"{c.id} ({c.adapter})" for c in loaded.campaigns) or "none"
    out_console().print(f"ok: {file}: {len(loaded.campaigns)} campaign(s): {campaigns}")
    shared = loaded.resolver.shared
    if shared is not None:
        # Checked for its form only: whether Redis answers is `predial check`'s job,
        # and the resolver works without it anyway.
        out_console().print(
            f"ok: [resolver.shared] {redacted_url(shared.url)}"
            f"{' (cluster)' if shared.cluster else ''}, prefix {shared.prefix!r}",
            markup=False,
        )
    if "service" in loaded.model_fields_set or loaded.service_error is not None:
        # [service] is checked too (the service's own variables, its keys' scopes),
        # though only predial serve needs it.
        service = loaded.checked_service()
        credentials = (
            f"{len(service.keys)} key(s), {len(service.webhook_secrets)} webhook secret(s)"
        )
        out_console().print(
            f"ok: [service] on {service.host}:{service.port}: {credentials}", markup=False
        )
