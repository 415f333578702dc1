"""`predial config validate`: check a predial.toml before a dialer relies on it.

`configuration_problems` is the one check of a configuration: `predial serve` makes
it too, before it starts, so both report every problem the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import click
from pydantic import ValidationError
from rich.markup import escape

from .._config import (
    ConfigCheck,
    PredialConfig,
    ResolverConfig,
    check_config,
    find_config,
    problem_order,
    redacted_problem,
    service_problems,
)
from .._fetcher import redacted_traceback
from .._plugins import PluginRegistry, load_plugins
from .._redaction import redact, safe_text
from .._resolver import Resolver
from .._tenants import Tenants
from .._wording import value_problem
from ..errors import ConfigurationError
from ..service._settings import ServiceConfig
from ..shared import redacted_url
from ._exits import EXIT_USAGE
from ._output import err_console, out_console, reported_by_the_command

__all__ = ["Checkup", "Problem", "config", "configuration_problems", "report_problems"]

log = logging.getLogger(__name__)

# A problem line is cut only past this many characters: an adapter's list of its
# settings is long, and the fix is often at its end.
_PROBLEM_LIMIT = 4000


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, as the line that says it, and the
    exception behind it (an adapter's own, a plugin's import error), if any."""

    text: str
    error: BaseException | None = None


@dataclass(frozen=True)
class Checkup:
    """What `configuration_problems` found."""

    checked: ConfigCheck
    #: Every problem, in the file's order of sections.
    problems: list[Problem]
    #: The service's settings (the command line's overrides applied), when serving
    #: and they are valid.
    service: ServiceConfig | None = None


def configuration_problems(
    file: Path,
    *,
    serving: bool = False,
    overrides: Mapping[str, object] | None = None,
) -> Checkup:
    """Every problem of `file`, found at once: the file's own (`check_config`), its
    `[service]`'s (checked as `predial serve` checks it before it listens) and each
    campaign's adapter, built as a dialer would build it. `serving`: for `predial
    serve`, which needs `[service]` (written or not), its credentials and at least
    one campaign; `overrides`: its command line's settings (`--host`...)."""
    checked = check_config(file)
    problems = [Problem(f"{file}: {problem}") for problem in checked.problems]
    loaded = checked.config
    service, service_lines = _service(checked, serving, overrides or {})
    problems.extend(service_lines)
    if serving and loaded is not None and not loaded.campaigns:
        problems.append(Problem(f"{file}: no [[campaigns]] are configured; nothing to serve"))
    if loaded is not None or checked.adapters:
        # Adapters are checked even when the file has other problems: a missing
        # variable or a typo must not hide a misspelt adapter or setting.
        problems.extend(_adapter_problems(checked))
    # As the file is laid out: a campaign's adapter beside its other problems.
    problems.sort(key=lambda problem: problem_order(problem.text.removeprefix(f"{file}: ")))
    return Checkup(checked, problems, None if problems else service)


def _service(
    checked: ConfigCheck, serving: bool, overrides: Mapping[str, object]
) -> tuple[ServiceConfig | None, list[Problem]]:
    """`[service]` with `overrides`, and its problems. Only the service needs it: a
    file without one is checked for it when serving only."""
    file = checked.path
    loaded = checked.config
    written = bool(checked.service_unset) or checked.service is not None
    if loaded is not None:
        written = written or "service" in loaded.model_fields_set
    if not (checked.parsed and (serving or written)):
        return None, []
    if checked.service_unset:  # the rest would judge the stand-ins
        return None, [Problem(f"{file}: {problem}") for problem in checked.service_unset]
    service = checked.service if written else ServiceConfig()
    if service is None:  # invalid: its problems are the file's
        return None, []
    if overrides:
        try:
            service = service.model_validate({**service.model_dump(), **overrides})
        except ValidationError as error:
            # Said as the command line's option, like every other configuration error.
            return None, [
                Problem(
                    f"--{str(item['loc'][0]).replace('_', '-') if item['loc'] else 'service'}: "
                    f"{value_problem(item)}"
                )
                for item in error.errors(include_url=False)
            ]
    found = service_problems(service, checked.campaign_ids, listening_on=service.host)
    return service, [Problem(f"{file}: {problem}") for problem in found]


def report_problems(problems: list[Problem]) -> None:
    """Each problem as one `error:` line on stderr; the traceback of the exception
    behind it at DEBUG level (--debug, -vv), for a bug report or an adapter's author."""
    console = err_console()
    for problem in problems:
        # Redacted, whatever wrote it: a plugin's or an adapter's exception text, a
        # key or a value of the file (a secret's value put in another setting, a
        # phone number as a key) may be quoted in it.
        text = redacted_problem(problem.text, limit=_PROBLEM_LIMIT)
        console.print(f"[bold red]error:[/] {escape(text)}", highlight=False)
        if problem.error is not None and log.isEnabledFor(logging.DEBUG):
            # Redacted: an adapter's exception text may quote the secret it refused.
            log.debug(
                "%s\n%s",
                redact(problem.error, limit=_PROBLEM_LIMIT),
                redacted_traceback(problem.error),
            )


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
    checkup = configuration_problems(file)
    if checkup.problems:
        report_problems(checkup.problems)
        ctx.exit(EXIT_USAGE)
    loaded = checkup.checked.config
    assert loaded is not None  # no problem was found, so the file loaded
    # Ids and names come from the file (or its variables): redacted like a problem.
    campaigns = (
        ", ".join(redact(f"{c.id} ({c.adapter})", limit=200) for c in loaded.campaigns) or "none"
    )
    out_console().print(
        f"ok: {file}: {len(loaded.campaigns)} campaign(s): {campaigns}",
        markup=False,
    )
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


def _adapter_problems(checked: ConfigCheck) -> list[Problem]:
    """Each campaign's adapter, built as a dialer would build it: an unknown adapter
    for every campaign that names one, its settings' errors for every campaign whose
    settings are complete (an unset variable's stand-in would only mislead), whatever
    else is wrong with the campaign."""
    file = checked.path
    source = checked.config or PredialConfig(
        resolver=ResolverConfig(plugins=checked.plugins), path=file
    )
    problems: list[Problem] = []
    # Every configured plugin file is tried, as a dialer would load them: a broken
    # one is a problem of its own and never hides the others (nor their adapters).
    with reported_by_the_command("predial._plugins"):
        registry = load_plugins()
        configured = registry.add_configured(source)
    problems.extend(
        Problem(safe_text(info.exception), info.exception) for info in configured if info.exception
    )
    complete = {index for index, _, whole in checked.campaigns if whole}
    # The gate's do-not-call lists and sources are checked as the resolver checks
    # them at start-up (the folder, each list, each plugin source).
    compliance = source.resolver.compliance
    dnc_dir = compliance.dnc_dir if compliance else None
    problems.extend(_audit_problems(file, compliance.audit if compliance else None))
    # The campaigns' tenants, as one resolver would hold them: two campaigns naming
    # one CRM account with different limits are a problem, though each builds alone.
    tenants = Tenants()
    for index, name in checked.adapters.items():
        if index not in complete:
            problem = _unknown_adapter(registry, name, f"{file}: campaigns[{index}].adapter")
            if problem is not None:
                problems.append(problem)
    for index, entry, whole in checked.campaigns:
        if not whole:
            continue
        # One at a time (a duplicate id is a problem of the file's, not a reason to
        # skip its adapter), strictly: the error is raised here, not logged as well.
        campaign = replace(entry.campaign(), origin=f"{file}: campaigns[{index}]")
        try:
            Resolver([campaign], registry=registry, tenants=tenants, dnc_dir=dnc_dir).close_sync()
        except ConfigurationError as error:
            problems.append(Problem(safe_text(error), error))
    return problems


def _audit_problems(file: Path, audit: str | None) -> list[Problem]:
    """Whether the audit log could be written where `[resolver.compliance] audit`
    says, without writing it (validating changes nothing)."""
    if audit is None or audit == "-":
        return []
    path = Path(audit)
    where = f"{file}: resolver.compliance.audit"
    if path.is_dir():
        return [Problem(f"{where}: {path} is a folder; give a file path in it")]
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is None or not folder.is_dir():
        return [Problem(f"{where}: {path.parent} cannot be made (a file is in the way)")]
    return []


def _unknown_adapter(registry: PluginRegistry, name: str, where: str) -> Problem | None:
    try:
        registry.adapter_spec(name)
    except ConfigurationError as error:  # UnknownAdapter, DuplicateAdapter
        return Problem(f"{where}: {safe_text(error)}", error)
    return None
