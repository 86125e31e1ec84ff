"""The worked example adapter (docs/plugins.md), installed through a real entry point."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from resilio import Context, Rejected
from resilio.config import load_config
from resilio.plugins import manager
from resilio.testing import FakeClock
from tests.config.conftest import make_distribution

HERE = Path(__file__).parent / "example_adapter"


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """Install the example adapter as a distribution with an entry point and import it."""
    site = tmp_path / "site"
    shutil.copytree(HERE / "acme_resilio", site / "acme_resilio")
    make_distribution(site, "acme-resilio", {"acme": "acme_resilio.plugin"}, {})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(__import__("sys").modules, "acme_resilio", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "acme_resilio.plugin", raising=False)
    import acme_resilio.plugin as plugin  # type: ignore[import-not-found]

    plugin.SENT.clear()
    return plugin


def test_adapter_is_discovered(acme: object) -> None:
    """The entry point makes the adapter's operations and policy type available."""
    system = manager.plugin_system()
    assert system.catalog.operations.provider("acme.send_email") == "acme"
    assert system.catalog.policy_types.provider("acme_quota") == "acme"


def test_adapter_pipelines_file_is_valid_and_runs(acme: object, clock: FakeClock) -> None:
    """The adapter's pipelines.yaml loads and sends an email by operation name."""
    registry = load_config(HERE / "pipelines.yaml", clock=clock, telemetry=False)
    assert [p.kind for p in registry.pipeline("acme.write").policies] == [
        "timeout",
        "retry",
        "circuit_breaker",
        "acme_quota",
        "timeout",
    ]
    assert registry.pipeline("acme.write").policies[2] is registry.pipeline("acme.read").policies[1]
    assert registry.execute("acme.send_email", {"to": "a@example.com"}) == "msg-1"


def test_adapter_classifier_decides_retries(acme: object, clock: FakeClock) -> None:
    """A 400 is permanent (one call); a 408 on a non-idempotent operation is not retried."""
    registry = load_config(HERE / "pipelines.yaml", clock=clock, telemetry=False)
    error_cls = acme.AcmeError  # type: ignore[attr-defined]
    calls: list[int] = []

    def fail(status: int) -> None:
        calls.append(status)
        raise error_cls(status)

    pipeline = registry.pipeline("acme.write")
    for status in (400, 408):
        with pytest.raises(error_cls):
            pipeline.execute(fail, status, context=Context("acme.send_email"))
    assert calls == [400, 408]
    with pytest.raises(error_cls):
        pipeline.execute(fail, 503, context=Context("acme.send_email"))
    assert calls[2:] == [503] * 4


def test_quota_policy_rejects(acme: object, clock: FakeClock) -> None:
    """The plugin's own policy type works inside a configured pipeline."""
    text = (HERE / "pipelines.yaml").read_text(encoding="utf-8")
    registry = load_config(
        text.replace("daily_limit: 1000", "daily_limit: 3"), clock=clock, telemetry=False
    )
    for _ in range(3):
        registry.execute("acme.send_email", {"to": "a@example.com"})
    with pytest.raises(Rejected, match="quota"):
        registry.execute("acme.send_email", {"to": "a@example.com"})


def test_quota_refusal_is_not_retried_or_counted(acme: object, clock: FakeClock) -> None:
    """The quota's refusal (retry_after: until midnight) is THROTTLED: Retry gives up at once,
    without sleeping, and the shared breaker does not count it, so reads go on."""
    text = (HERE / "pipelines.yaml").read_text(encoding="utf-8")
    registry = load_config(
        text.replace("daily_limit: 1000", "daily_limit: 1"), clock=clock, telemetry=False
    )
    registry.execute("acme.send_email", {"to": "a@example.com"})
    for _ in range(6):  # more refusals than the breaker's failure_threshold of 5
        with pytest.raises(Rejected, match="quota") as info:
            registry.execute("acme.send_email", {"to": "a@example.com"})
    assert info.value.retry_after == pytest.approx(86400 - clock.time() % 86400)
    assert clock.sleeps == []
    assert len(acme.SENT) == 1  # type: ignore[attr-defined]
    assert registry.execute("acme.get_status", {"id": "msg-1"}) == "delivered"


async def test_quota_policy_rejects_async_calls_too(acme: object, clock: FakeClock) -> None:
    """The policy guards execute_async as it guards execute (its layer has both paths)."""
    text = (HERE / "pipelines.yaml").read_text(encoding="utf-8")
    registry = load_config(
        text.replace("daily_limit: 1000", "daily_limit: 1"), clock=clock, telemetry=False
    )
    pipeline = registry.pipeline("acme.write")

    async def send() -> str:
        return "sent"

    assert await pipeline.execute_async(send, context=Context("acme.send_email")) == "sent"
    with pytest.raises(Rejected, match="quota"):
        await pipeline.execute_async(send, context=Context("acme.send_email"))


def test_ambiguous_failure_of_an_idempotent_read_is_retried(acme: object, clock: FakeClock) -> None:
    """A 408 on acme.get_status (idempotent) is retried by acme.read's three attempts."""
    registry = load_config(HERE / "pipelines.yaml", clock=clock, telemetry=False)
    error_cls = acme.AcmeError  # type: ignore[attr-defined]
    calls: list[int] = []

    def fail() -> None:
        calls.append(408)
        raise error_cls(408)

    with pytest.raises(error_cls):
        registry.pipeline("acme.read").execute(fail, context=Context("acme.get_status"))
    assert calls == [408] * 3


DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _docs_blocks(language: str) -> list[str]:
    if not DOCS.exists():
        pytest.skip("docs/plugins.md is not part of this checkout")
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_docs_show_the_adapters_pipelines_file() -> None:
    """The YAML in docs/plugins.md is the adapter's tested pipelines.yaml."""
    import yaml

    shipped = yaml.safe_load((HERE / "pipelines.yaml").read_text(encoding="utf-8"))
    shown = [yaml.safe_load(block) for block in _docs_blocks("yaml")]
    assert shipped in shown


def test_docs_classifier_behaves_like_the_adapters(acme: object) -> None:
    """The classifier shown in docs/plugins.md classifies every status as the tested one does."""
    block = next(b for b in _docs_blocks("python") if "def classify(" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, str(DOCS), "exec"), namespace)  # the code block of our own docs
    shown_error, shown_classify = namespace["AcmeError"], namespace["classify"]
    for status in (400, 404, 408, 429, 500, 503):
        expected = acme.classify(acme.AcmeError(status, 2.0), None)  # type: ignore[attr-defined]
        assert shown_classify(shown_error(status, 2.0), None) == expected  # type: ignore[operator]
    assert shown_classify(ValueError("x"), None) is None  # type: ignore[operator]


def test_docs_show_what_resilio_plugins_prints(
    acme: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every line docs/plugins.md shows for the adapter in `resilio plugins` is printed."""
    from resilio.cli import main

    block = next(b for b in _docs_blocks("console") if "$ resilio plugins" in b)
    start = block.index("acme:")
    shown = block[start : block.index("$", start)].splitlines()
    assert main(["plugins"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert shown == printed[printed.index(shown[0]) : printed.index(shown[0]) + len(shown)]
