"""Report: table numbers from hand-written run dirs, pooling by seed, checkpoint lookup, PNG curves."""

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread

from pex_jax.errors import ConfigError
from pex_jax.tools import report
from pex_jax.tools.report import algo_sort_key, make_report

SEEDS = [0, 1, 2]


def write_run(
    run_dir: Path,
    task: str,
    algo: str,
    seeds: list[int],
    offline: dict[int, list[float]] | None = None,
    online: dict[int, list[float]] | None = None,
    success: dict[int, float] | None = None,
    regret: dict[int, list[float]] | None = None,
    summary: dict | None = None,
    **config,
) -> Path:
    """A run dir in the metrics.jsonl contract; evals every 100 offline updates / 50 env steps.

    It ends finished: a summary.json without a status key, as runs written before the key have; `summary`
    replaces its contents, and deleting it gives a run that never ended.
    """
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"seeds": seeds} if summary is None else summary))
    cfg = {"task": task, "algo": algo, "seeds": seeds, "dataset_id": f"pex/{task}-v0", "offline_checkpoint": "",
           "data_source": "local"}
    (run_dir / "config.json").write_text(json.dumps({**cfg, **config}))
    lines = []
    n_off = len(next(iter(offline.values()))) if offline else 0
    for k in range(n_off):
        for s in seeds:
            lines.append(
                {
                    "seed": s,
                    "phase": "offline",
                    "offline_step": 100 * (k + 1),
                    "online_step": 0,
                    "eval/normalized_score": offline[s][k],
                    "train/critic_loss": 1.0,
                }
            )
    n_on = len(next(iter(online.values()))) if online else 0
    for k in range(n_on):
        for s in seeds:
            if regret:
                lines.append(
                    {
                        "seed": s,
                        "phase": "online",
                        "offline_step": 100 * n_off,
                        "online_step": 50 * k + 25,
                        "train/regret": regret[s][k],
                    }
                )
            row = {
                "seed": s,
                "phase": "online",
                "offline_step": 100 * n_off,
                "online_step": 50 * (k + 1),
                "eval/normalized_score": online[s][k],
            }
            if success and k == n_on - 1:
                row["eval/success_rate"] = success[s]
            lines.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run_dir


@pytest.fixture
def runs(tmp_path) -> Path:
    """2 tasks x 2 algos x 3 seeds; folder names deliberately say nothing about task or algo."""
    root = tmp_path / "runs"
    # maze-a / pex: seeds 0,1 in one dir and seed 2 in another (pooled by seed)
    pex_off = {0: [20.0, 40.0], 1: [30.0, 50.0], 2: [35.0, 60.0]}
    pex_on = {0: [50.0, 70.0], 1: [60.0, 80.0], 2: [70.0, 96.0]}
    pex_reg = {0: [0.9, 0.5], 1: [0.8, 0.4], 2: [0.7, 0.3]}
    pex_succ = {0: 1.0, 1: 0.0, 2: 1.0}
    write_run(
        root / "x" / "20250101-000000",
        "maze-a",
        "pex",
        [0, 1],
        {s: pex_off[s] for s in (0, 1)},
        {s: pex_on[s] for s in (0, 1)},
        {s: pex_succ[s] for s in (0, 1)},
        {s: pex_reg[s] for s in (0, 1)},
    )
    write_run(
        root / "y" / "20250102-000000",
        "maze-a",
        "pex",
        [2],
        {2: pex_off[2]},
        {2: pex_on[2]},
        {2: pex_succ[2]},
        {2: pex_reg[2]},
    )
    write_run(root / "z" / "a", "maze-a", "scratch", SEEDS, None, {0: [0.0, 10.0], 1: [5.0, 20.0], 2: [5.0, 30.0]})
    # maze-b: an offline-only run whose checkpoint a pex run reuses (no offline lines of its own)
    off = write_run(root / "b" / "off", "maze-b", "offline", SEEDS, {0: [10.0, 30.0], 1: [12.0, 33.0], 2: [9.0, 39.0]})
    write_run(
        root / "b" / "fine",
        "maze-b",
        "pex",
        SEEDS,
        None,
        {0: [40.0, 45.0], 1: [41.0, 55.0], 2: [42.0, 65.0]},
        offline_checkpoint=str(off / "offline_ckpt"),
    )
    write_run(root / "b" / "scr", "maze-b", "scratch", SEEDS, None, {0: [1.0, 2.0], 1: [1.0, 4.0], 2: [1.0, 6.0]})
    return root


def _rows(tmp_path, runs) -> dict[tuple[str, str], report.Row]:
    rows, _ = make_report([str(runs)], tmp_path / "out")
    return {(r.task, r.algo): r for r in rows}


def test_table_numbers_are_means_and_population_stds_over_pooled_seeds(tmp_path, runs):
    rows = _rows(tmp_path, runs)
    assert set(rows) == {
        ("maze-a", "pex"),
        ("maze-a", "scratch"),
        ("maze-b", "offline"),
        ("maze-b", "pex"),
        ("maze-b", "scratch"),
    }
    pex = rows[("maze-a", "pex")]
    assert pex.seeds == SEEDS  # seeds 0,1 and 2 came from different dirs
    assert pex.offline_score.mean == pytest.approx(50.0)
    assert pex.offline_score.std == pytest.approx(np.sqrt((100 + 0 + 100) / 3))
    assert pex.online_score.mean == pytest.approx(82.0)
    assert pex.online_score.std == pytest.approx(np.sqrt((144 + 4 + 196) / 3))
    assert pex.success.mean == pytest.approx(2 / 3) and pex.success.std == pytest.approx(np.sqrt(2) / 3)
    assert pex.regret.mean == pytest.approx(0.4) and pex.regret.std == pytest.approx(np.sqrt(0.02 / 3))
    scratch = rows[("maze-a", "scratch")]
    assert scratch.offline_score is None and scratch.online_score.mean == pytest.approx(20.0)
    assert scratch.success is None and scratch.regret is None
    assert rows[("maze-b", "offline")].online_score is None


def test_reused_offline_checkpoint_takes_offline_score_from_the_referenced_run(tmp_path, runs):
    rows = _rows(tmp_path, runs)
    fine = rows[("maze-b", "pex")]
    assert fine.offline_score.mean == pytest.approx(34.0)
    assert fine.offline_score.std == pytest.approx(np.sqrt((16 + 1 + 25) / 3))
    assert fine.online_score.mean == pytest.approx(55.0)
    assert rows[("maze-b", "scratch")].offline_score is None


def test_reused_checkpoint_that_cannot_be_found_shows_a_dash(tmp_path):
    write_run(tmp_path / "runs" / "r", "maze-c", "pex", [0], None, {0: [5.0]}, offline_checkpoint="/nonexistent/ckpt")
    rows, path = make_report([str(tmp_path / "runs")], tmp_path / "out")
    assert rows[0].offline_score is None
    assert "| maze-c | local | norm. return | pex | 1 | – | – | 5.0 ± 0.0 |" in path.read_text()


def test_report_md_shows_formatted_cells_and_is_printed(tmp_path, runs, capsys):
    _, path = make_report([str(runs)], tmp_path / "out")
    text = path.read_text()
    row = "| maze-a | local | norm. return | pex | 3 | 50.0 ± 8.2 | – | 82.0 ± 10.7 | 0.67 ± 0.47 | 0.40 ± 0.08 |"
    assert row in text
    assert "| maze-a | local | norm. return | scratch | 3 | – | – | 20.0 ± 8.2 | – | – |" in text
    assert "population std" in text
    assert "| maze-a | local | norm. return | pex | 3 | 50.0 ± 8.2 |" in capsys.readouterr().out


def test_report_md_names_runs_relative_to_the_working_directory_so_clones_agree(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, path = make_report(["runs"], tmp_path / "out")
    listed = [line for line in path.read_text().splitlines() if line.startswith("- `")]
    assert listed and all(line.startswith("- `runs/") for line in listed), listed
    assert str(tmp_path) not in path.read_text()


def test_each_task_gets_a_png_with_a_line_per_algorithm(tmp_path, runs):
    make_report([str(runs)], tmp_path / "out")
    tab10 = colormaps["tab10"].colors
    for task in ("maze-a", "maze-b"):
        png = tmp_path / "out" / f"curves_{task}.png"
        assert png.exists()
        pixels = imread(png)[..., :3].reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 1
        for algo_index in (0, 3):  # pex (blue) and scratch (red) lines are drawn in their colours
            assert (np.abs(pixels - np.array(tab10[algo_index])).max(axis=1) < 0.02).sum() > 50
    assert (tmp_path / "out" / "curves_maze-a.png").name in (tmp_path / "out" / "report.md").read_text()


def test_relogged_steps_keep_the_last_value_and_torn_lines_are_skipped(tmp_path):
    run_dir = write_run(tmp_path / "runs" / "r", "maze-d", "scratch", [0], None, {0: [1.0, 2.0]})
    with (run_dir / "metrics.jsonl").open("a") as f:  # a resumed run re-logs step 100, then crashes mid-line
        f.write(
            json.dumps(
                {"seed": 0, "phase": "online", "offline_step": 0, "online_step": 100, "eval/normalized_score": 7.0}
            )
            + "\n"
        )
        f.write('{"seed": 0, "phase": "onl')
    rows, path = make_report([str(tmp_path / "runs")], tmp_path / "out")
    assert rows[0].online_score.mean == 7.0
    assert "skipped 1 unreadable" in path.read_text()


def test_runs_can_be_given_as_globs_and_several_paths(tmp_path, runs):
    found = report.find_run_dirs([str(runs / "x"), str(runs / "b" / "*")])
    assert len(found) == 4
    assert report.find_run_dirs([str(tmp_path / "nothing-here")]) == []


def test_cli_without_run_dirs_exits_1_with_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["pex-jax-report", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        report.run_main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run directories" in err and str(tmp_path / "empty") in err


def test_cli_writes_report_for_multiple_runs_arguments(tmp_path, runs):
    assert report.main(["--runs", str(runs / "x"), "--runs", str(runs / "y"), "--out", str(tmp_path / "o")]) == 0
    assert "| maze-a | local | norm. return | pex | 3 |" in (tmp_path / "o" / "report.md").read_text()


def test_table_names_the_source_and_the_d4rl_scale_and_the_online_step0_score(tmp_path):
    run_dir = write_run(tmp_path / "runs" / "d", "antmaze-umaze-d4rl", "pex", [0, 1], {0: [40.0], 1: [60.0]},
                        {0: [80.0], 1: [100.0]}, data_source="d4rl", env_task={"score": "success"})
    rows_file = run_dir / "metrics.jsonl"
    step0 = [{"seed": s, "phase": "online", "offline_step": 100, "online_step": 0, "eval/normalized_score": v}
             for s, v in ((0, 30.0), (1, 50.0))]
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in step0) + rows_file.read_text())
    rows, path = make_report([str(tmp_path / "runs")], tmp_path / "out")
    assert (rows[0].source, rows[0].scale) == ("d4rl", "100×success")
    assert rows[0].step0_score.mean == pytest.approx(40.0)
    assert "| antmaze-umaze-d4rl | d4rl | 100×success | pex | 2 | 50.0 ± 10.0 | 40.0 ± 10.0 | 90.0 ± 10.0 |" in (
        path.read_text())


# ---------------------------------------------------------------------------- run status
@pytest.mark.parametrize(
    ("summary", "finished", "text"),
    [
        (None, False, "unfinished"),
        ("{not json", False, "unfinished (summary.json unreadable)"),
        ({"seeds": [0]}, True, "finished"),
        ({"status": "finished"}, True, "finished"),
        ({"status": "failed"}, False, "failed"),
        ({"status": "preempted"}, False, "preempted"),
        ({"status": "diverged", "diverged": {"seed": 3, "step": 12000, "phase": "online"}}, False,
         "diverged (seed 3, online step 12000)"),
        ({"status": "diverged"}, False, "diverged"),
    ],
)
def test_run_status_is_read_from_summary_json(tmp_path, summary, finished, text):
    if summary is not None:
        (tmp_path / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    status = report.run_status(tmp_path)
    assert status.finished is finished
    assert str(status) == text


def test_run_without_summary_is_left_out_by_default_with_one_line(tmp_path, runs, capsys):
    scratch = runs / "z" / "a"
    (scratch / "summary.json").unlink()
    rows, path = make_report([str(runs)], tmp_path / "out")
    assert ("maze-a", "scratch") not in {(r.task, r.algo) for r in rows}
    assert all(r.finished for r in rows)
    out = capsys.readouterr().out
    assert out.count("left out") == 1
    assert f"left out {scratch.resolve()}: unfinished" in out
    text = path.read_text()
    assert f"left out {scratch.resolve()}: unfinished" in text
    assert "| maze-a | local | norm. return | scratch |" not in text


def test_include_unfinished_marks_the_row_and_labels_its_end_cells_last_eval(tmp_path, runs):
    (runs / "z" / "a" / "summary.json").unlink()  # maze-a scratch: online evaluations for every seed
    (runs / "b" / "off" / "summary.json").unlink()  # maze-b offline: never reached an online phase
    rows, path = make_report([str(runs)], tmp_path / "out", include_unfinished=True)
    by_key = {(r.task, r.algo): r for r in rows}
    assert by_key[("maze-a", "scratch")].status == "unfinished"
    assert by_key[("maze-a", "pex")].status == "finished"
    text = path.read_text()
    assert "| task | source | score | algo | seeds | status | score after offline |" in text
    assert "| maze-a | local | norm. return | scratch | 3 | unfinished | – | – | last eval 20.0 ± 8.2 | – | – |" in text
    assert "| maze-b | local | norm. return | offline | 3 | unfinished | last eval 34.0 ± 3.7 | – | – |" in text
    assert "| maze-a | local | norm. return | pex | 3 | finished | 50.0 ± 8.2 | – | 82.0 ± 10.7 |" in text
    assert "left out" not in text


def test_diverged_run_is_reported_with_its_seed_and_step(tmp_path, runs, capsys):
    diverged = {"status": "diverged", "diverged": {"seed": 2, "step": 12000, "phase": "online"}}
    (runs / "y" / "20250102-000000" / "summary.json").write_text(json.dumps(diverged))  # maze-a pex, seed 2
    rows, _ = make_report([str(runs)], tmp_path / "out")
    assert {(r.task, r.algo): r for r in rows}[("maze-a", "pex")].seeds == [0, 1]
    assert "diverged (seed 2, online step 12000)" in capsys.readouterr().out
    rows, path = make_report([str(runs)], tmp_path / "out2", include_unfinished=True)
    pex = {(r.task, r.algo): r for r in rows}[("maze-a", "pex")]
    assert pex.seeds == SEEDS and pex.status == "diverged (seed 2, online step 12000)"
    assert "| pex | 3 | diverged (seed 2, online step 12000) | 50.0 ± 8.2 | – | last eval 82.0 ± 10.7 |" in (
        path.read_text())


def test_finished_runs_give_the_same_table_with_or_without_include_unfinished(tmp_path, runs):
    _, default = make_report([str(runs)], tmp_path / "a")
    _, included = make_report([str(runs)], tmp_path / "b", include_unfinished=True)
    assert default.read_text().split("## ")[0] == included.read_text().split("## ")[0]
    assert "status" not in default.read_text().split("## ")[0]


def test_cli_with_only_unfinished_runs_exits_1_and_include_unfinished_reports_them(tmp_path, capsys):
    run_dir = write_run(tmp_path / "runs" / "r", "maze-e", "pex", [0], None, {0: [5.0, 9.0]})
    (run_dir / "summary.json").unlink()
    with pytest.raises(ConfigError, match="--include-unfinished"):
        report.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o")])
    assert "left out" in capsys.readouterr().out
    assert report.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o"), "--include-unfinished"]) == 0
    assert "| pex | 1 | unfinished | – | – | last eval 9.0 ± 0.0 |" in (tmp_path / "o" / "report.md").read_text()


def test_grid_points_sort_by_value_after_their_algorithm():
    labels = ["pex@inv_temperature=1000", "direct", "pex@inv_temperature=30", "pex", "pex@inv_temperature=10",
              "pex@inv_temperature=100", "pex@expectile=0.9", "pex@expectile=0.7"]
    assert sorted(labels, key=algo_sort_key) == [
        "pex", "pex@expectile=0.7", "pex@expectile=0.9", "pex@inv_temperature=10", "pex@inv_temperature=30",
        "pex@inv_temperature=100", "pex@inv_temperature=1000", "direct"]
