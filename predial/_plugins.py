"""Plugin loading and the adapter registry.

Plugins are found through the `predial` entry-point group and loaded one at a
time: a plugin that fails to import, misspells its hook or registers a bad class is
recorded as failed (shown by `predial plugins`) and the others still load.

`PREDIAL_LOAD_PLUGINS=a,b` loads only the named entry points (empty: none);
`PREDIAL_DISABLE_PLUGINS=c` skips the named ones. Names are entry-point or
distribution names; one that matches no installed plugin is logged as a warning
(`predial.environment`), once per process, with the closest name.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import pluggy

from . import hookspecs
from ._redaction import redact
from .adapters import adapter_problems
from .errors import DuplicateAdapter, PluginLoadError, UnknownAdapter

if TYPE_CHECKING:
    from ._config import PredialConfig

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "AdapterSpec",
    "PluginInfo",
    "PluginRegistry",
    "PluginStatus",
    "load_plugins",
    "make_plugin_manager",
]

log = logging.getLogger(__name__)
# Not under predial._plugins: commands that list failed plugins themselves quiet that
# logger, and a typo in the environment is listed nowhere else.
env_log = logging.getLogger("predial.environment")

ENTRY_POINT_GROUP = "predial"

#: Modules registered like any third-party plugin, before the entry points.
BUILTIN_PLUGINS: tuple[str, ...] = ("predial.adapters._builtin",)

PluginStatus = Literal["active", "disabled", "failed"]


@dataclass
class PluginInfo:
    """One plugin as `predial plugins` shows it."""

    name: str
    origin: Literal["builtin", "entry point", "explicit", "config"]
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = "active"
    adapters: list[str] = field(default_factory=list)
    error: str | None = None
    exception: Exception | None = field(default=None, repr=False, compare=False)
    #: A plugin passed in code: its failure is raised to the caller, so not logged.
    raised: bool = field(default=False, repr=False, compare=False)

    @property
    def source(self) -> str:
        """A human description of where the plugin came from, for error messages."""
        if self.distribution:
            version = f" {self.version}" if self.version else ""
            return f"{self.distribution}{version} (entry point {self.name!r})"
        if self.origin == "config":
            return f"{self.name} ([resolver] plugins)"
        return f"{self.name} ({self.origin})"

    def fail(self, error: str, exception: Exception | None = None) -> None:
        self.status = "failed"
        # A plugin's exception text is third-party text: redacted before it is kept
        # (`predial plugins` shows it) or logged.
        self.error = redact(error)
        self.exception = exception
        if not self.raised:  # said once: by the exception, or by this line
            log.warning("plugin %s failed to load: %s", self.source, redact(error))


@dataclass(frozen=True)
class AdapterSpec:
    """A registered adapter class and the plugin that registered it."""

    name: str
    cls: type[Any]
    plugin: PluginInfo


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with predial's hook specs and nothing registered."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


class PluginRegistry:
    """The loaded plugins and the adapters they registered, by name."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.plugins: list[PluginInfo] = []
        self._adapters: dict[str, AdapterSpec] = {}
        self._conflicts: dict[str, DuplicateAdapter] = {}
        self._class_plugins: dict[type[Any], _AdapterClassPlugin] = {}

    # -- lookups ---------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return sorted(self._adapters)

    def adapter_spec(self, name: str) -> AdapterSpec:
        """The adapter registered as `name`; `UnknownAdapter` says what is installed."""
        if name in self._conflicts:
            raise self._conflicts[name]
        try:
            return self._adapters[name]
        except KeyError:
            installed = self.adapter_names()
            # A typo of a first-party adapter that is not installed is suggested too,
            # with how to install it.
            known = [*installed, *(n for n in UnknownAdapter.FIRST_PARTY if n not in installed)]
            close = difflib.get_close_matches(name, known, n=1)
            raise UnknownAdapter(name, installed, close[0] if close else None) from None

    def adapter_class(self, name: str) -> type[Any]:
        return self.adapter_spec(name).cls

    def failures(self) -> list[PluginInfo]:
        return [plugin for plugin in self.plugins if plugin.status == "failed"]

    # -- loading ---------------------------------------------------------------

    def add(self, plugin: object, info: PluginInfo) -> None:
        """Register one plugin object or module and collect its adapters.

        Failures are recorded on `info` rather than raised, so one bad plugin
        never keeps the others from loading.
        """
        if plugin is not None and self.manager.is_registered(plugin):
            log.debug("plugin %s is already registered; skipped", info.source)
            return
        self.plugins.append(info)
        if info.status != "active":
            return
        try:
            self.manager.register(plugin, name=self._registration_name(info))
        except pluggy.PluginValidationError as error:
            info.fail(f"invalid hook implementation: {error}")
            return
        except Exception as error:  # its own code, run while pluggy looked at it
            info.fail(f"cannot be registered: {type(error).__name__}: {error}")
            return
        try:
            # A hook whose name matches no spec (say, `register_adapter`) fails here
            # rather than being silently ignored.
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            self.manager.unregister(plugin)
            info.fail(f"unknown hook: {error}")
            return
        self._collect_adapters(plugin, info)

    def _registration_name(self, info: PluginInfo) -> str:
        """pluggy's name for a plugin: unique (two classes both called `Good`, from
        two modules, are two plugins), or pluggy refuses the second with a dump of
        every plugin registered."""
        base = f"{info.origin}:{info.name}"
        name, number = base, 1
        while self.manager.has_plugin(name):
            number += 1
            name = f"{base}#{number}"
        return name

    def add_explicit(self, plugin: object) -> None:
        """Register a plugin passed in code (`Resolver(plugins=[...])`, `load_plugins`):
        a module or object with a `register_adapters` hook implementation, or an
        adapter class itself (a class with `name` and `fetch_phone`), registered as
        is. Raise if it fails or registers nothing, since the caller named it directly.
        """
        name = _explicit_name(plugin)
        try:
            if self._is_adapter_class(plugin):
                # One wrapper per class, so passing the same class twice registers it
                # once.
                plugin = self._class_plugins.setdefault(plugin, _AdapterClassPlugin(plugin))
            reason = None if self._hook_names(plugin) else _no_hook_reason(plugin)
        except Exception as error:
            # Looking at it ran its own code (a metaclass's __getattr__ or __dir__, a
            # property) and that raised: said as this plugin's failure, not as the
            # bare error of someone else's code.
            raise PluginLoadError(
                name, f"cannot be inspected: {type(error).__name__}: {error}"
            ) from error
        if reason is not None:
            raise PluginLoadError(name, reason)
        info = PluginInfo(name=name, origin="explicit", raised=True)
        self.add(plugin, info)
        if info.status == "failed":
            if isinstance(info.exception, DuplicateAdapter):
                raise info.exception
            raise PluginLoadError(name, info.error or "unknown error")

    def add_configured(self, config: PredialConfig) -> list[PluginInfo]:
        """Import and register the plugins `config` names in `[resolver] plugins`.

        Like entry points, and unlike plugins passed in code, a configured plugin that
        fails (its file missing or raising at import, no hook, a bad adapter) is
        recorded as failed, with a `PluginLoadError` naming its key path as
        `exception`, and the others still load. Returns their `PluginInfo`s, in
        the configuration's order.
        """
        from ._config import DEFAULT_CONFIG

        failed: dict[int, PluginLoadError] = {}
        modules = iter(config.plugin_modules(failed))
        infos = []
        told: set[int] = set()  # a failure named twice is listed once
        for index, spec in enumerate(config.resolver.plugins):
            info = PluginInfo(name=spec, origin="config")
            if index in failed:
                if id(failed[index]) in told:
                    continue
                told.add(id(failed[index]))
                self.plugins.append(info)
                info.fail(failed[index].reason, failed[index])
            else:
                module = next(modules)
                if self.manager.is_registered(module):
                    continue  # named twice: registered once
                try:
                    hooks = self._hook_names(module)
                except Exception as error:  # the module's own __dir__ raised
                    self.plugins.append(info)
                    info.fail(f"cannot be inspected: {type(error).__name__}: {error}")
                else:
                    if hooks:
                        self.add(module, info)
                    else:
                        self.plugins.append(info)
                        info.fail(_NO_REGISTER_ADAPTERS)
                if info.status == "failed" and info.exception is None:
                    context = f"{config.path or DEFAULT_CONFIG}: resolver.plugins[{index}]"
                    info.exception = PluginLoadError(spec, info.error or "unknown error", context)
            infos.append(info)
        return infos

    def _hook_names(self, plugin: object) -> list[str]:
        """The attributes of `plugin` marked `@predial.hookimpl` (misspelt ones too:
        `add` refuses those by name)."""
        if plugin is None or isinstance(plugin, (str, bytes)):
            return []
        return [
            attribute
            for attribute in dir(plugin)
            if self.manager.parse_hookimpl_opts(plugin, attribute) is not None
        ]

    def _is_adapter_class(self, plugin: object) -> TypeGuard[type[Any]]:
        # A class with fetch_phone and no hook of its own is meant as an adapter; one
        # without a valid name is still taken as one, so the error says what is wrong.
        return (
            isinstance(plugin, type)
            and hasattr(plugin, "fetch_phone")
            and not self._hook_names(plugin)
        )

    def _collect_adapters(self, plugin: object, info: PluginInfo) -> None:
        collected: list[type[Any]] = []
        problems: list[str] = []

        def register(cls: type[Any]) -> None:
            found = adapter_problems(cls)
            if found:
                problems.extend(found)
            else:
                collected.append(cls)

        impls = [
            impl
            for impl in self.manager.hook.register_adapters.get_hookimpls()
            if impl.plugin is plugin
        ]
        for impl in impls:
            try:
                impl.function(*[{"register": register}[arg] for arg in impl.argnames])
            except Exception as error:
                info.fail(f"register_adapters raised {type(error).__name__}: {error}")
                return
        if problems:
            info.fail("; ".join(problems))
            return
        for cls in collected:
            existing = self._adapters.get(cls.name)
            if existing is not None and existing.cls is not cls:
                conflict = DuplicateAdapter(
                    cls.name,
                    existing.plugin.source,
                    info.source,
                    _duplicate_hint(cls, existing.plugin, info),
                )
                self._conflicts[cls.name] = conflict
                info.fail(str(conflict), conflict)
                continue
            self._adapters[cls.name] = AdapterSpec(cls.name, cls, info)
            if cls.name not in info.adapters:
                info.adapters.append(cls.name)


def _duplicate_hint(cls: type[Any], first: PluginInfo, second: PluginInfo) -> str | None:
    """What to do about `second` registering `cls` under a name `first` has: None
    (uninstall or disable one) when both are installed plugins, which
    PREDIAL_DISABLE_PLUGINS can leave out; else rename the adapter that came second
    (a built-in, a class passed in code or a configured file cannot be disabled)."""
    if first.origin == second.origin == "entry point":
        return None
    rename = f"rename {cls.__qualname__}.name (adapter names are unique)"
    if first.origin == "entry point":
        return f"{rename}, or disable {first.name} (PREDIAL_DISABLE_PLUGINS={first.name})"
    if second.origin == "entry point":
        return f"disable {second.name} (PREDIAL_DISABLE_PLUGINS={second.name}), or {rename}"
    return rename


class _AdapterClassPlugin:
    """An adapter class passed where a plugin goes: the plugin registering just it."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.__name__ = cls.__qualname__

    @hookspecs.hookimpl
    def register_adapters(self, register: Callable[[type[Any]], None]) -> None:
        register(self.cls)


_NO_REGISTER_ADAPTERS = (
    "defines no hook: add `@predial.hookimpl def register_adapters(register)` calling "
    "register(YourAdapter)"
)
_ACCEPTED = (
    "pass a module or object with `@predial.hookimpl def register_adapters(register)`, "
    "or an adapter class (a class with `name` and `fetch_phone`)"
)


def _no_hook_reason(plugin: object) -> str:
    """Why `plugin` registers nothing, and what is accepted instead."""
    if isinstance(plugin, (str, bytes)):
        return (
            "a name, not a plugin: import the module and pass the module, or list the "
            "name in predial.toml's [resolver] plugins"
        )
    if not isinstance(plugin, type) and callable(getattr(plugin, "fetch_phone", None)):
        cls = type(plugin).__qualname__
        return (
            f"an adapter instance, not a class: pass {cls} itself (the resolver builds "
            "one per campaign from its settings)"
        )
    return f"registers no hook: {_ACCEPTED}"


def _explicit_name(plugin: object) -> str:
    """How errors and `predial plugins` name a plugin passed in code."""
    if plugin is None or isinstance(plugin, (str, bytes)):
        return repr(plugin) if isinstance(plugin, bytes) else str(plugin)
    try:
        name = getattr(plugin, "__name__", None)
    except Exception:  # a __getattr__ that raises: named by its type
        name = None
    # Only a name that is text: an object answering every attribute (a catch-all
    # __getattr__) would be named by whatever it returned, a lambda's repr.
    return name if isinstance(name, str) and name else type(plugin).__name__


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _entry_point_info(entry_point: EntryPoint) -> PluginInfo:
    dist = getattr(entry_point, "dist", None)
    return PluginInfo(
        name=entry_point.name,
        origin="entry point",
        distribution=dist.name if dist is not None else None,
        version=dist.version if dist is not None else None,
    )


def _unique_entry_points() -> list[EntryPoint]:
    seen: set[tuple[str, str]] = set()
    unique = []
    # By name: `predial plugins` lists them in a stable order, and a name registered
    # twice is reported the same way on every machine.
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value))
    for entry_point in found:
        key = (entry_point.name, entry_point.value)
        if key not in seen:
            seen.add(key)
            unique.append(entry_point)
    return unique


# (variable, name) pairs already warned about: one line per process, however often
# plugins are loaded (predial serve loads them to check, then to serve).
_WARNED: set[tuple[str, str]] = set()


def _warn_unmatched(
    only: set[str] | None, disabled: set[str], entry_points: list[EntryPoint]
) -> None:
    """A name in PREDIAL_LOAD_PLUGINS or PREDIAL_DISABLE_PLUGINS that matches no
    installed plugin is a typo (`acmee` would load nothing, `mycrmm` disable nothing,
    silently): one warning line each, with the closest installed name."""
    known: set[str] = set()
    for entry_point in entry_points:
        info = _entry_point_info(entry_point)
        known.update(name for name in (info.name, info.distribution) if name)
    # By entry-point name only: the distributions' names would double the line.
    listed = ", ".join(sorted({entry_point.name for entry_point in entry_points})) or "none"
    for variable, names in (
        ("PREDIAL_LOAD_PLUGINS", only or set()),
        ("PREDIAL_DISABLE_PLUGINS", disabled),
    ):
        for name in sorted(names - known):
            if (variable, name) in _WARNED:
                continue
            _WARNED.add((variable, name))
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"installed plugins: {listed}"
            env_log.warning(
                "%s names %r, which matches no installed plugin; %s",
                variable,
                redact(name),
                hint,
            )


def load_plugins(
    extra: Iterable[object] = (),
    *,
    entrypoints: bool = True,
    builtins: bool = True,
    environ: Mapping[str, str] | None = None,
) -> PluginRegistry:
    """Load the built-in plugins, the installed entry points and `extra` plugins.

    `extra` holds plugins registered without an entry point (scripts and tests):
    modules or objects with a `register_adapters` hook, or adapter classes; a failure
    among them, or one registering nothing, raises `PluginLoadError`, since the
    caller named them directly.
    """
    env = os.environ if environ is None else environ
    registry = PluginRegistry(make_plugin_manager())

    if builtins:
        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            registry.add(module, PluginInfo(name=module_name, origin="builtin"))

    if entrypoints:
        only = _names(env.get("PREDIAL_LOAD_PLUGINS"))
        disabled = _names(env.get("PREDIAL_DISABLE_PLUGINS")) or set()
        found = _unique_entry_points()
        _warn_unmatched(only, disabled, found)
        for entry_point in found:
            info = _entry_point_info(entry_point)
            names = {info.name, info.distribution or info.name}
            if names & disabled or (only is not None and not names & only):
                info.status = "disabled"
                registry.add(None, info)
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:
                registry.plugins.append(info)
                info.fail(f"import failed: {type(error).__name__}: {error}")
                continue
            registry.add(plugin, info)

    for plugin in extra:
        registry.add_explicit(plugin)
    return registry
