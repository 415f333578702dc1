"""`predial config validate`: check a predial.toml before a dialer relies on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.markup import escape

from ..campaign import Campaign
from ..config import (
    ConfigCheck,
    PredialConfig,
    ResolverConfig,
    check_config,
    find_config,
    problem_order,
)
from ..errors import ConfigurationError
from ..plugins import PluginRegistry, load_plugins
from ..redaction import safe_text
from ..resolver import Resolver
from ..shared import redacted_url
from .exits import EXIT_USAGE
from .output import err_console, out_console, reported_by_the_command

__all__ = ["config"]


@click.group()
def config() -> None:
    """Work with predial.toml."""


@config.command()
@click.argument(
    "config_file",
    metavar="PATH",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The predial.toml to validate, as the other commands take it (or give PATH).",
)
@click.pass_context
def validate(ctx: click.Context, config_file: Path | None, config_path: Path | None) -> None:
    """Validate PATH (default: $PREDIAL_CONFIG, then ./predial.toml) and build every
    campaign's adapter, so a typo or a missing variable shows now, not at dial time.
    Every problem is listed, one line each, with its key path; exit code 2 if any."""
    if config_file is not None and config_path is not None and config_file != config_path:
        raise click.UsageError(
            f"two files given ({config_file} and --config {config_path}); give one"
        )
    file = find_config(config_file or config_path)
    checked = check_config(file)
    problems = [f"{file}: {problem}" for problem in checked.problems]
    loaded = checked.config
    # [service] is checked too (the service's own variables, its keys' scopes), though
    # only predial serve needs it.
    if loaded is None:
        problems.extend(f"{file}: {problem}" for problem in checked.service_unset)
    elif "service" in loaded.model_fields_set or loaded.service_unset:
        problems.extend(f"{file}: {problem}" for problem in loaded.service_problems())
    if loaded is not None or checked.adapters:
        # Adapters are checked even when the file has other problems: a missing
        # variable must not hide a misspelt adapter.
        problems.extend(_adapter_problems(checked))
    if problems:
        # As the file is laid out: a campaign's adapter beside its other problems.
        problems.sort(key=lambda line: problem_order(line.removeprefix(f"{file}: ")))
        console = err_console()
        for problem in problems:
            console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        ctx.exit(EXIT_USAGE)
    assert loaded is not None  # no problem was found, so the file loaded
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
    if "service" in loaded.model_fields_set:
        service = loaded.service
        credentials = (
            f"{len(service.keys)} key(s), {len(service.webhook_secrets)} webhook secret(s)"
        )
        out_console().print(
            f"ok: [service] on {service.host}:{service.port}: {credentials}", markup=False
        )


def _adapter_problems(checked: ConfigCheck) -> list[str]:
    """Each campaign's adapter, built as a dialer would build it: an unknown adapter
    for every campaign that names one, its settings' errors for every campaign that
    is valid and complete (an unset variable's stand-in would only mislead)."""
    file = checked.path
    source = checked.config or PredialConfig(
        resolver=ResolverConfig(plugins=checked.plugins), path=file
    )
    problems: list[str] = []
    # Every configured plugin file is tried, as a dialer would load them: a broken
    # one is a problem of its own and never hides the others (nor their adapters).
    with reported_by_the_command("predial.plugins"):
        registry = load_plugins()
        configured = registry.add_configured(source)
    problems.extend(safe_text(info.exception) for info in configured if info.exception)
    buildable: dict[str, Campaign] = {}
    for index, entry, whole in checked.campaigns:
        if whole and entry.id not in buildable:  # a duplicate id is a problem already
            where = f"{file}: campaigns[{index}]"
            buildable[entry.id] = replace(entry.campaign(), origin=where)
    complete = {index for index, _, whole in checked.campaigns if whole}
    for index, name in checked.adapters.items():
        if index not in complete:
            problem = _unknown_adapter(registry, name, f"{file}: campaigns[{index}].adapter")
            if problem is not None:
                problems.append(problem)
    for campaign in buildable.values():
        # One at a time, strictly: the error is raised here, not logged as well.
        try:
            Resolver([campaign], registry=registry).close_sync()
        except ConfigurationError as error:
            problems.append(safe_text(error))
    return problems


def _unknown_adapter(registry: PluginRegistry, name: str, where: str) -> str | None:
    try:
        registry.adapter_spec(name)
    except ConfigurationError as error:  # UnknownAdapter, DuplicateAdapter
        return f"{where}: {safe_text(error)}"
    return None
