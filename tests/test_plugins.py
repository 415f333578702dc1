"""Plugin discovery, registration and the adapter registry."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ScriptedAdapter

import predial
from predial import (
    Campaign,
    ConfigurationError,
    DuplicateAdapter,
    Lead,
    PluginLoadError,
    Resolver,
    UnknownAdapter,
)
from predial._plugins import ENTRY_POINT_GROUP, load_plugins, make_plugin_manager


class HubSpotLike:
    name = "hubspot"

    def __init__(self, token: str = "") -> None:
        self.token = token

    async def fetch_phone(self, external_id: str) -> str:
        return "+12024561111"


class OtherHubSpot:
    name = "hubspot"

    def fetch_phone(self, external_id: str) -> None:
        return None


class Plugin:
    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @predial.hookimpl
    def register_adapters(self, register):
        for cls in self.classes:
            register(cls)


def install_distribution(
    site: Path, dist: str, module: str, source: str, version: str = "1.0"
) -> None:
    """Write an installed distribution (module + dist-info with an entry point) into `site`."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{dist.removeprefix('predial-')} = {module}\n"
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site-packages directory on sys.path holding test plugin distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("predial_test_"):
            del sys.modules[name]
    importlib.invalidate_caches()


GOOD_PLUGIN = """
import predial

class EchoAdapter:
    name = "echo"

    def __init__(self, number="+12024561111"):
        self.number = number

    def fetch_phone(self, external_id):
        return self.number

@predial.hookimpl
def register_adapters(register):
    register(EchoAdapter)
"""

BROKEN_PLUGIN = """
import predial
raise ImportError("predial_test_broken needs a module that is not installed")
"""

MISSPELT_HOOK = """
import predial

@predial.hookimpl
def register_adapter(register):
    pass
"""


def test_installed_distribution_is_discovered_through_its_entry_point(site: Path) -> None:
    """An installed predial-echo distribution registers its adapter, with its version."""
    install_distribution(site, "predial-echo", "predial_test_echo", GOOD_PLUGIN, "2.3")
    registry = load_plugins(environ={})
    info = next(p for p in registry.plugins if p.name == "echo")
    assert (info.status, info.distribution, info.version) == ("active", "predial-echo", "2.3")
    assert info.adapters == ["echo"]
    assert "echo" in registry.adapter_names()


def test_broken_plugin_is_recorded_and_the_others_still_load(site: Path) -> None:
    """A plugin that raises on import is 'failed' with its error; the good one works."""
    install_distribution(site, "predial-echo", "predial_test_echo", GOOD_PLUGIN)
    install_distribution(site, "predial-broken", "predial_test_broken", BROKEN_PLUGIN)
    registry = load_plugins(environ={})
    broken = next(p for p in registry.plugins if p.name == "broken")
    assert broken.status == "failed"
    assert "needs a module that is not installed" in (broken.error or "")
    assert registry.failures() == [broken]


def test_resolver_works_beside_a_broken_plugin(site: Path) -> None:
    """Campaigns that do not need the broken plugin resolve normally."""
    install_distribution(site, "predial-echo", "predial_test_echo", GOOD_PLUGIN)
    install_distribution(site, "predial-broken", "predial_test_broken", BROKEN_PLUGIN)
    with Resolver([Campaign("c", "echo")]) as resolver:
        resolution = resolver.resolve_sync(Lead(campaign_id="c", external_id="x"))
    assert resolution.phone_number == "+12024561111"


def test_misspelt_hook_fails_loudly(site: Path) -> None:
    """`register_adapter` (no s) matches no hook spec: the plugin is failed, not ignored."""
    install_distribution(site, "predial-typo", "predial_test_typo", MISSPELT_HOOK)
    registry = load_plugins(environ={})
    typo = next(p for p in registry.plugins if p.name == "typo")
    assert typo.status == "failed"
    assert "register_adapter" in (typo.error or "")


def test_disable_plugins_by_environment(site: Path) -> None:
    """PREDIAL_DISABLE_PLUGINS skips a plugin by entry-point or distribution name."""
    install_distribution(site, "predial-echo", "predial_test_echo", GOOD_PLUGIN)
    for name in ("echo", "predial-echo"):
        registry = load_plugins(environ={"PREDIAL_DISABLE_PLUGINS": f"other, {name}"})
        info = next(p for p in registry.plugins if p.name == "echo")
        assert info.status == "disabled"
        assert "echo" not in registry.adapter_names()


def test_load_plugins_allow_list(site: Path) -> None:
    """PREDIAL_LOAD_PLUGINS loads only the named plugins; empty loads none."""
    install_distribution(site, "predial-echo", "predial_test_echo", GOOD_PLUGIN)
    install_distribution(site, "predial-broken", "predial_test_broken", BROKEN_PLUGIN)
    registry = load_plugins(environ={"PREDIAL_LOAD_PLUGINS": "echo"})
    statuses = {p.name: p.status for p in registry.plugins if p.origin == "entry point"}
    # Installed first-party plugins (predial-hubspot, ...) are disabled like "broken".
    assert statuses["echo"] == "active"
    assert statuses["broken"] == "disabled"
    assert {name for name, status in statuses.items() if status == "active"} == {"echo"}
    registry = load_plugins(environ={"PREDIAL_LOAD_PLUGINS": ""})
    assert all(p.status == "disabled" for p in registry.plugins if p.origin == "entry point")


def test_unknown_adapter_suggests_and_lists() -> None:
    """A typo gets 'did you mean' and the installed list."""
    with pytest.raises(UnknownAdapter) as caught:
        Resolver([Campaign("c", "hubspt")], plugins=[Plugin(HubSpotLike)], load_entrypoints=False)
    message = str(caught.value)
    assert "did you mean 'hubspot'?" in message
    assert "Installed adapters: " in message
    assert "hubspot" in message.split("Installed adapters: ")[1]


def test_duplicate_adapter_names_name_both_sources(site: Path) -> None:
    """Two plugins registering 'hubspot' is an error naming both."""
    install_distribution(
        site,
        "predial-hubspot",
        "predial_test_hubspot",
        GOOD_PLUGIN.replace('name = "echo"', 'name = "hubspot"'),
    )
    with pytest.raises(DuplicateAdapter) as caught:
        load_plugins([Plugin(OtherHubSpot)], environ={})
    message = str(caught.value)
    assert "predial-hubspot 1.0" in message
    assert "Plugin (explicit)" in message


def test_duplicate_among_entry_points_fails_only_the_lookup(site: Path) -> None:
    """Two installed plugins with one name: both recorded, the name refuses to resolve."""
    source = GOOD_PLUGIN.replace('name = "echo"', 'name = "hubspot"')
    install_distribution(site, "predial-hubspot", "predial_test_hubspot", source)
    install_distribution(site, "predial-hubspot-fork", "predial_test_hubspot_fork", source)
    registry = load_plugins(environ={})
    with pytest.raises(DuplicateAdapter, match="predial-hubspot 1.0.*predial-hubspot-fork 1.0"):
        registry.adapter_class("hubspot")
    assert len(registry.failures()) == 1


def test_registering_the_same_class_twice_is_not_a_conflict() -> None:
    """The same plugin passed twice registers once."""
    plugin = Plugin(HubSpotLike)
    registry = load_plugins([plugin, plugin], entrypoints=False)
    assert registry.adapter_class("hubspot") is HubSpotLike


@pytest.mark.parametrize(
    ("cls_source", "message"),
    [
        ("class A:\n    def fetch_phone(self, external_id): ...", "name must be a lowercase slug"),
        ("class A:\n    name = 'Bad Name'\n    def fetch_phone(self, x): ...", "lowercase slug"),
        ("class A:\n    name = 'a'", "no fetch_phone"),
        ("class A:\n    name = 'a'\n    def fetch_phone(self): ...", "one argument"),
    ],
)
def test_invalid_adapter_classes_are_refused(cls_source: str, message: str) -> None:
    """A class that is not an adapter is named with what is wrong."""
    namespace: dict[str, object] = {}
    exec(cls_source, namespace)
    with pytest.raises(PluginLoadError, match=message):
        load_plugins([Plugin(namespace["A"])], entrypoints=False)


def test_hook_that_raises_is_a_load_error() -> None:
    """An exception inside register_adapters is recorded with the plugin's name."""

    class Exploding:
        @predial.hookimpl
        def register_adapters(self, register):
            raise RuntimeError("no config")

    with pytest.raises(PluginLoadError, match="Exploding.*no config"):
        load_plugins([Exploding()], entrypoints=False)


def test_plugin_manager_factory_is_fresh_each_time() -> None:
    """No module-level manager: each call is independent."""
    assert make_plugin_manager() is not make_plugin_manager()
    assert make_plugin_manager().get_plugins() == set()


def test_module_plugins_are_accepted() -> None:
    """`plugins=` takes modules too, as scripts pass them."""
    module = type(sys)("predial_test_module_plugin")
    exec(
        "import predial\n"
        "from conftest import ScriptedAdapter\n"
        "@predial.hookimpl\n"
        "def register_adapters(register):\n"
        "    register(ScriptedAdapter)\n",
        module.__dict__,
    )
    registry = load_plugins([module], entrypoints=False)
    assert registry.adapter_class("scripted") is ScriptedAdapter


def test_adapter_settings_errors_are_configuration_errors() -> None:
    """Settings the adapter does not take: a clear error naming campaign and adapter."""
    expected = "Campaign('c').settings.tokn: adapter 'hubspot' has no such setting; did you mean"
    with pytest.raises(ConfigurationError, match=re.escape(expected)) as caught:
        Resolver(
            [Campaign("c", "hubspot", {"tokn": "secret-value"})],
            plugins=[Plugin(HubSpotLike)],
            load_entrypoints=False,
        )
    assert "secret-value" not in str(caught.value)


def test_non_strict_resolver_keeps_good_campaigns_working() -> None:
    """strict=False: a broken campaign refuses retryably, the others resolve."""
    resolver = Resolver(
        [Campaign("good", "hubspot"), Campaign("bad", "salesforce")],
        plugins=[Plugin(HubSpotLike)],
        load_entrypoints=False,
        strict=False,
    )
    with resolver:
        assert resolver.resolve_sync(Lead(campaign_id="good", external_id="x")).source == "crm"
        with pytest.raises(predial.Unresolvable) as caught:
            resolver.resolve_sync(Lead(campaign_id="bad", external_id="x"))
        stored = resolver.resolve_sync(
            Lead(campaign_id="bad", external_id="x", phone_number="+12024561414")
        )
    assert (caught.value.reason, caught.value.retryable) == ("campaign_misconfigured", True)
    assert (stored.source, stored.fallback_reason) == ("stored", "campaign_misconfigured")


def test_campaign_repr_hides_settings() -> None:
    """Settings hold secrets; the campaign's repr leaves them out."""
    assert "s3cr3t" not in repr(Campaign("c", "hubspot", {"token": "s3cr3t"}))


def test_adapter_constructor_crash_is_a_configuration_error() -> None:
    """Any exception from an adapter's constructor is named, and strict=False survives it."""

    class Crashing:
        name = "crashing"

        def __init__(self, token: str = "") -> None:
            raise RuntimeError(f"cannot connect with {token}")

        def fetch_phone(self, external_id: str) -> None:
            return None

    with pytest.raises(ConfigurationError, match="RuntimeError") as caught:
        Resolver(
            [Campaign("c", "crashing", {"token": "s3cr3t"})],
            plugins=[Plugin(Crashing)],
            load_entrypoints=False,
        )
    assert "s3cr3t" not in str(caught.value)
    resolver = Resolver(
        [Campaign("c", "crashing", {"token": "s3cr3t"})],
        plugins=[Plugin(Crashing)],
        load_entrypoints=False,
        strict=False,
    )
    with resolver, pytest.raises(predial.Unresolvable) as refused:
        resolver.resolve_sync(Lead(campaign_id="c", external_id="x"))
    assert refused.value.reason == "campaign_misconfigured"


def test_an_adapter_class_passed_as_a_plugin_is_registered() -> None:
    """`Resolver(plugins=[MyAdapter])`, the first thing people try, registers the class
    (once, however often it is passed) under its own name."""
    with Resolver(
        [Campaign("c", "hubspot")], plugins=[HubSpotLike, HubSpotLike], load_entrypoints=False
    ) as resolver:
        resolution = resolver.resolve_sync(Lead(campaign_id="c", external_id="x"))
        explicit = [p for p in resolver.registry.plugins if p.origin == "explicit"]
    assert (resolution.phone_number, resolution.adapter) == ("+12024561111", "hubspot")
    assert [(p.name, p.adapters, p.status) for p in explicit] == [
        ("HubSpotLike", ["hubspot"], "active")
    ]


def test_an_adapter_class_beside_a_plugin_with_the_same_class_is_no_conflict() -> None:
    registry = load_plugins([Plugin(HubSpotLike), HubSpotLike], entrypoints=False)
    assert registry.adapter_class("hubspot") is HubSpotLike


def test_an_adapter_class_with_a_bad_name_says_what_is_wrong() -> None:
    """A class with fetch_phone is taken as an adapter, so the error is the adapter's."""

    class NoName:
        def fetch_phone(self, external_id: str) -> None:
            return None

    with pytest.raises(PluginLoadError, match=r"NoName\.name must be a lowercase slug"):
        Resolver([], plugins=[NoName], load_entrypoints=False)


def test_an_adapter_class_conflicting_with_an_installed_one_is_refused() -> None:
    with pytest.raises(DuplicateAdapter, match="'hubspot' is registered twice"):
        load_plugins([Plugin(HubSpotLike), OtherHubSpot], entrypoints=False)


ACCEPTED = (
    "pass a module or object with `@predial.hookimpl def register_adapters(register)`, "
    "or an adapter class (a class with `name` and `fetch_phone`)"
)


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        (object(), f"plugin 'object' failed to load: registers no hook: {ACCEPTED}"),
        (None, f"plugin 'None' failed to load: registers no hook: {ACCEPTED}"),
        (type("Settings", (), {"name": "x"}), "'Settings' failed to load: registers no hook"),
        (type(sys)("predial_test_empty"), "'predial_test_empty' failed to load: registers no hook"),
        (
            "my_adapters.py",
            "plugin 'my_adapters.py' failed to load: a name, not a plugin: import the module "
            "and pass the module, or list the name in predial.toml's [resolver] plugins",
        ),
        (
            HubSpotLike(),
            "plugin 'HubSpotLike' failed to load: an adapter instance, not a class: pass "
            "HubSpotLike itself (the resolver builds one per campaign from its settings)",
        ),
    ],
)
def test_a_plugin_that_registers_no_hook_is_refused_saying_what_is_accepted(
    plugin: object, expected: str
) -> None:
    """Before, these registered nothing and the campaign then failed 'unknown adapter'."""
    with pytest.raises(PluginLoadError) as caught:
        Resolver([Campaign("c", "hubspot")], plugins=[plugin], load_entrypoints=False)
    assert expected in str(caught.value)
    registry = load_plugins(entrypoints=False)
    with pytest.raises(PluginLoadError):
        registry.add_explicit(plugin)
    assert [p.origin for p in registry.plugins] == ["builtin"]


def test_a_plugin_whose_hook_is_misspelt_is_refused_by_the_hooks_name() -> None:
    """A hookimpl under another name is a hook: the error names it, not 'no hook'."""

    class Typo:
        @predial.hookimpl
        def register_adapter(self, register):
            register(HubSpotLike)

    with pytest.raises(PluginLoadError, match="unknown hook.*register_adapter"):
        load_plugins([Typo()], entrypoints=False)


# -- issue 13: a typo in PREDIAL_LOAD_PLUGINS / PREDIAL_DISABLE_PLUGINS is said


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-process warnings afresh."""
    import predial._plugins

    monkeypatch.setattr(predial._plugins, "_WARNED", set())


@pytest.mark.usefixtures("fresh_warnings")
def test_a_plugin_name_matching_nothing_is_warned_once_with_the_closest(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install_distribution(site, "predial-echo", "predial_test_echo", GOOD_PLUGIN)
    caplog.set_level("WARNING", logger="predial.environment")
    environ = {"PREDIAL_LOAD_PLUGINS": "echoo, echo", "PREDIAL_DISABLE_PLUGINS": "predial-ech"}
    load_plugins(environ=environ)
    load_plugins(environ=environ)  # loaded again (predial serve does): not said again
    assert [record.getMessage() for record in caplog.records] == [
        "PREDIAL_LOAD_PLUGINS names 'echoo', which matches no installed plugin; did you "
        "mean 'echo'?",
        "PREDIAL_DISABLE_PLUGINS names 'predial-ech', which matches no installed plugin; "
        "did you mean 'predial-echo'?",
    ]
    caplog.clear()
    # Entry-point and distribution names both match; nothing to say.
    load_plugins(environ={"PREDIAL_LOAD_PLUGINS": "echo", "PREDIAL_DISABLE_PLUGINS": ""})
    load_plugins(environ={"PREDIAL_DISABLE_PLUGINS": "predial-echo"})
    assert caplog.records == []


@pytest.mark.usefixtures("fresh_warnings")
@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "PREDIAL_LOAD_PLUGINS",
            "hubspt",
            "WARNING predial.environment: PREDIAL_LOAD_PLUGINS names 'hubspt', which matches "
            "no installed plugin; did you mean 'hubspot'?",
        ),
        (
            "PREDIAL_DISABLE_PLUGINS",
            "zzzzzz",
            "WARNING predial.environment: PREDIAL_DISABLE_PLUGINS names 'zzzzzz', which "
            "matches no installed plugin; installed plugins: ",
        ),
    ],
)
def test_predial_plugins_warns_of_a_name_matching_no_plugin(
    variable: str, value: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PREDIAL_LOAD_PLUGINS=hubspt predial plugins` no longer disables everything silently."""
    from click.testing import CliRunner

    from predial.cli._app import cli

    monkeypatch.chdir(tmp_path)  # no predial.toml

    result = CliRunner().invoke(cli, ["plugins"], env={variable: value, "PREDIAL_CONFIG": None})
    assert result.exit_code == 0, result.output
    warned = [text for text in result.stderr.splitlines() if "predial.environment" in text]
    assert len(warned) == 1
    assert warned[0].startswith(line)
    assert "hubspot" in warned[0]


# -- issue 13: a class named like a built-in adapter is refused once, saying to rename it


class ClassNamedFile:
    name = "file"

    def fetch_phone(self, external_id: str) -> None:
        return None


def test_an_adapter_class_named_like_a_builtin_is_raised_once_with_rename_hint(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG", logger="predial")
    with pytest.raises(DuplicateAdapter) as caught:
        Resolver([Campaign("c", "file", {"path": "x.csv"})], plugins=[ClassNamedFile])
    assert str(caught.value) == (
        "adapter name 'file' is registered twice: by predial.adapters._builtin (builtin) and "
        "by ClassNamedFile (explicit); rename ClassNamedFile.name (adapter names are unique)"
    )
    # Raised, so not logged as well; and no variable can disable a built-in.
    assert [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"] == []
    assert capsys.readouterr().err == ""


def test_a_duplicate_with_an_installed_plugin_offers_both_ways_out(site: Path) -> None:
    install_distribution(
        site,
        "predial-hubspot",
        "predial_test_hubspot",
        GOOD_PLUGIN.replace('name = "echo"', 'name = "hubspot"'),
    )
    with pytest.raises(DuplicateAdapter) as caught:
        load_plugins([OtherHubSpot], environ={})
    assert str(caught.value).endswith(
        "; rename OtherHubSpot.name (adapter names are unique), or disable hubspot "
        "(PREDIAL_DISABLE_PLUGINS=hubspot)"
    )
    # Two installed plugins: either can be disabled.
    install_distribution(
        site,
        "predial-hubspot-fork",
        "predial_test_hubspot_fork",
        GOOD_PLUGIN.replace('name = "echo"', 'name = "hubspot"'),
    )
    with pytest.raises(DuplicateAdapter, match=r"; uninstall or disable one \(PREDIAL_DISABLE"):
        load_plugins(environ={}).adapter_class("hubspot")


# -- a hostile review: plugins passed in code whose own code raises when looked at


class _RaisingMeta(type):
    def __getattr__(cls, attribute: str) -> object:
        raise RuntimeError("meta boom +12025551234")


class _RaisingDirMeta(type):
    def __dir__(cls) -> list[str]:
        raise RuntimeError("dir boom")


class _MetaGetattrRaises(metaclass=_RaisingMeta):
    name = "weird"


class _DirRaises(metaclass=_RaisingDirMeta):
    name = "dirb"

    async def fetch_phone(self, external_id: str) -> str:
        return "+12024561111"


class _PropertyRaises:
    @property
    def fetch_phone(self) -> object:
        raise RuntimeError("prop boom token=sk_live_abcdefSECRET")


class _CatchAll:
    def __getattr__(self, attribute: str) -> object:
        return lambda *args, **kwargs: None


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        (
            _MetaGetattrRaises,
            "plugin '_MetaGetattrRaises' failed to load: cannot be inspected: RuntimeError: "
            "meta boom +1202***1234",
        ),
        (
            _DirRaises,
            "plugin '_DirRaises' failed to load: cannot be inspected: RuntimeError: dir boom",
        ),
        (
            _PropertyRaises(),
            "plugin '_PropertyRaises' failed to load: cannot be inspected: RuntimeError: prop "
            "boom token=<redacted>",
        ),
    ],
)
def test_a_plugin_whose_inspection_raises_is_a_plugin_load_error(
    plugin: object, expected: str
) -> None:
    with pytest.raises(PluginLoadError) as caught:
        Resolver([Campaign("c", "hubspot")], plugins=[plugin], load_entrypoints=False)
    assert str(caught.value) == expected


def test_an_object_answering_every_attribute_is_named_by_its_type() -> None:
    with pytest.raises(PluginLoadError) as caught:
        load_plugins([_CatchAll()], entrypoints=False)
    assert caught.value.plugin == "_CatchAll"
    assert "lambda" not in str(caught.value)


def test_a_raising_hook_s_error_is_masked_as_its_log_line_is() -> None:
    class Exploding:
        @predial.hookimpl
        def register_adapters(self, register):
            raise RuntimeError("hook boom +12025551234 password=hunter2hunter2")

    with pytest.raises(PluginLoadError) as caught:
        load_plugins([Exploding()], entrypoints=False)
    assert str(caught.value) == (
        "plugin 'Exploding' failed to load: register_adapters raised RuntimeError: hook boom "
        "+1202***1234 password=<redacted>"
    )


def test_two_adapter_classes_with_the_same_class_name_are_two_plugins() -> None:
    """Classes both called Adapter (from two modules) register both; pluggy refused the
    second by its name, with a dump of every registered plugin."""
    first = type("Adapter", (HubSpotLike,), {"name": "first"})
    second = type("Adapter", (HubSpotLike,), {"name": "second"})
    registry = load_plugins([first, second], entrypoints=False)
    assert registry.adapter_names() == ["file", "first", "second"]
    assert not registry.failures()


def test_an_installed_plugin_whose_registration_raises_is_failed_not_raised() -> None:
    """load_plugins goes on past it: recorded as failed, as an import error is."""
    from predial._plugins import PluginInfo

    odd = type(sys)("predial_test_odd_plugin")
    exec("def __dir__():\n    raise RuntimeError('dir boom')\n", odd.__dict__)
    registry = load_plugins(entrypoints=False)
    info = PluginInfo(name="odd", origin="entry point")
    registry.add(odd, info)
    assert (info.status, info.error) == ("failed", "cannot be registered: RuntimeError: dir boom")
