"""`make dashboard`: the W&B report and workspace build offline, and every key their panels read is one the runner
logs (docs/tracking.md's dashboard table and a real run)."""

import json
import re
from pathlib import Path

import pytest

from pex_jax.errors import ConfigError
from pex_jax.tools import dashboard
from pex_jax.train import run
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _panel_keys(spec: dict) -> set[str]:
    """Every metric key the specification's panels read (line plots' metrics, bar charts' summary metrics)."""
    text = json.dumps(spec)
    keys = set(re.findall(r'"metrics": \[([^\]]*)\]', text))
    found = set()
    for group in keys:
        found |= {k.removeprefix("summary_metrics.") for k in re.findall(r'"([^"]+)"', group)}
    return found


@pytest.fixture()
def no_wandb_login(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_without_a_key_the_specification_is_written_with_every_panel_and_the_command_printed(tmp_path, no_wandb_login,
                                                                                          capsys):
    out = tmp_path / "dash.json"
    assert dashboard.main(["--entity", "lab", "--project", "pex-jax", "--source", "d4rl", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "make dashboard ENTITY=lab PROJECT=pex-jax SOURCE=d4rl" in printed
    spec = json.loads(out.read_text())
    text = json.dumps(spec)
    for title in ("normalized score vs offline updates", "normalized score vs online env steps",
                  "end of offline vs online step 0", "offline-pick rate of the policy set (evaluation)", "regret",
                  "final normalized score by task and configuration"):
        assert title in text, title
    assert all(task in text for task in dashboard.TASKS)
    assert '"data_source"' in text and '"d4rl"' in text  # the source filter
    assert _panel_keys(spec) == set(dashboard.PANEL_KEYS)


def test_the_panel_keys_are_the_ones_docs_tracking_lists():
    doc = (ROOT / "docs" / "tracking.md").read_text()
    table = doc[doc.index("### The comparison dashboard"):doc.index("### Hyperparameter grids")]
    listed = dict(re.findall(r"^\| `([^`]+)` \| `?([a-z_]+)`? \|", table, re.M))
    assert listed == {k: axis for k, (axis, _) in dashboard.PANEL_KEYS.items()}


def test_the_runner_logs_every_key_the_dashboard_reads(tmp_path, tiny_minari_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run(tiny_config(tmp_path, algo="pex", seeds="0-1"))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["per_seed"]["0"]
    for key, (axis, _) in dashboard.PANEL_KEYS.items():
        if axis == "summary":
            assert key in summary, key
        elif axis == "offline_step":  # W&B's offline/ prefix over the metrics.jsonl name
            assert any(key.removeprefix("offline/") in r for r in rows if r["phase"] == "offline"), key
        else:
            assert any(key in r for r in rows if r["phase"] == "online"), key


def test_an_unknown_source_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="unknown data source") as e:
        dashboard.build("lab", "p", source="hf")
    assert "\n" not in str(e.value) and "d4rl, minari, local" in str(e.value)
