"""`predial plugins`: what is installed, and what failed to load."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ..config import find_config, load_config
from ..plugins import load_plugins
from .output import err_console, out_console
from .resolve import config_option

__all__ = ["plugins"]


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
def plugins(config_path: Path | None, as_json: bool) -> None:
    """List plugins: version, adapters, status (active, disabled, failed: why)."""
    extra: list[object] = []
    path = find_config(config_path)
    if path.exists():  # plugin files named by the configuration count too
        extra.extend(load_config(path).plugin_modules())
    elif config_path is not None:
        raise click.BadParameter(f"{path}: no such file", param_hint="--config")
    registry = load_plugins(extra)
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
                        "status": info.status,
                        "error": info.error,
                    }
                )
            )
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("plugin", "origin", "distribution", "version", "adapters", "status"):
        table.add_column(column)
    for info in registry.plugins:
        status = {"active": "[green]active[/]", "disabled": "[yellow]disabled[/]"}.get(
            info.status, f"[red]failed[/]: {info.error}"
        )
        table.add_row(
            info.name,
            info.origin,
            info.distribution or "",
            info.version or "",
            ", ".join(info.adapters),
            status,
        )
    out_console().print(table)
    failed = registry.failures()
    if failed:
        err_console().print(f"{len(failed)} plugin(s) failed to load; see the status column")
