"""`predial plugins`: what is installed, and what failed to load."""

from __future__ import annotations

import contextlib
import json
import tomllib
from pathlib import Path
from typing import cast

import click
from rich.markup import escape
from rich.text import Text

from .._config import PredialConfig, ResolverConfig, find_config, load_config
from .._plugins import PluginInfo, PluginRegistry, load_plugins
from .._redaction import safe_text
from ..errors import ConfigurationError
from ._output import (
    FitColumn,
    err_console,
    fitted_table,
    out_console,
    print_records,
    reported_by_the_command,
)
from ._resolve import config_option

__all__ = ["plugins"]

_STATUS = {"active": "green", "disabled": "yellow", "failed": "red"}


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
def plugins(config_path: Path | None, as_json: bool) -> None:
    """List plugins: where each comes from, what it provides (adapters; do-not-call
    sources as dnc:NAME) and its status (active, disabled, failed: why). Plugin files
    named in predial.toml's [resolver] plugins count too; one that fails is listed as
    failed, as an installed plugin would be."""
    path = find_config(config_path)
    if not path.exists() and config_path is not None:
        raise click.BadParameter(f"{path}: no such file", param_hint="--config")
    with reported_by_the_command("predial._plugins"):  # each failure is listed below the table
        registry = load_plugins()
        if path.exists():
            registry.add_configured(_plugins_of(path))
    sources = _dnc_sources(registry)
    if as_json:
        for info in registry.plugins:
            click.echo(
                json.dumps(
                    {
                        "name": info.name,
                        "origin": info.origin,
                        "distribution": info.distribution,
                        "version": info.version,
                        "adapters": info.adapters,
                        "dnc_sources": sources.get(info.source, []),
                        "status": info.status,
                        "error": info.error,
                    }
                )
            )
        return
    console = out_console()
    columns = plugins_table(registry, sources)
    fitted = fitted_table(columns, console.width)
    if fitted is None:  # too narrow for the table: a block of lines per plugin
        print_records(console, columns)
    else:
        console.print(fitted[0])
    failed = registry.failures()
    for info in failed:
        # Below the table, a line each: a reason squeezed into a column would wrap
        # over a dozen lines at 80 columns.
        console.print(
            f"{escape(info.name)} [red]failed[/]: {escape(info.error or '')}", soft_wrap=True
        )
    if failed:
        err_console().print(f"{len(failed)} plugin(s) failed to load; the reasons are listed above")


def _plugins_of(path: Path) -> PredialConfig:
    """The configuration, or when it has problems (an unset variable for a campaign's
    token, say) just its `[resolver] plugins`: listing plugins needs no secret."""
    try:
        return load_config(path)
    except ConfigurationError as error:
        problem = safe_text(error)
    named: object = None
    # Unreadable or not TOML: the problem above says so, and no plugin is listed.
    with contextlib.suppress(OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        resolver = tomllib.loads(path.read_text(encoding="utf-8")).get("resolver")
        named = resolver.get("plugins") if isinstance(resolver, dict) else None
    readable = isinstance(named, list) and all(isinstance(spec, str) for spec in named)
    also = "its [resolver] plugins are listed all the same" if readable else "its plugins are not"
    err_console().print(
        f"note: {problem}; {also} (predial config validate lists every problem)",
        markup=False,
        highlight=False,
    )
    plugins = cast(list[str], named) if readable else []
    return PredialConfig(resolver=ResolverConfig(plugins=plugins), path=path)


def _dnc_sources(registry: PluginRegistry) -> dict[str, list[str]]:
    """Each plugin's do-not-call sources (`register_dnc_sources`), by its source."""
    from ..compliance._dnc_sources import DncSources

    with reported_by_the_command("predial.compliance._dnc_sources"):
        found = DncSources.from_registry(registry)
    by_plugin: dict[str, list[str]] = {}
    for source in found.sources():
        by_plugin.setdefault(source.plugin, []).append(source.name)
    return by_plugin


def plugins_table(
    registry: PluginRegistry, sources: dict[str, list[str]] | None = None
) -> list[FitColumn]:
    """The plugins as columns of a table that stays readable at 80 columns: the
    distribution and its version, or where the plugin came from, share one column
    (wrapping between words, as the adapters do), and a failure's reason goes below
    the table. Names and statuses are never cut."""
    names, origins, adapters, statuses = [], [], [], []
    for info in registry.plugins:
        names.append(Text(info.name))
        origins.append(Text(_origin(info)))
        provided = list(info.adapters)
        provided += [f"dnc:{name}" for name in (sources or {}).get(info.source, [])]
        adapters.append(Text(", ".join(provided)))
        statuses.append(Text(info.status, style=_STATUS[info.status]))
    return [
        FitColumn("plugin", names),
        FitColumn("from", origins, wrap=True),
        FitColumn("provides", adapters, wrap=True),
        FitColumn("status", statuses),
    ]


def _origin(info: PluginInfo) -> str:
    if info.distribution:
        return f"{info.distribution} {info.version}" if info.version else info.distribution
    return {"config": "[resolver] plugins", "explicit": "code"}.get(info.origin, info.origin)
