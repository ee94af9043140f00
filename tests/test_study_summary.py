"""The PointMaze study summary: column labels read from the data, the offline score's source, run status."""

import json
from pathlib import Path

from experiments import study_summary

SCORE, SUCCESS, PICK = study_summary.SCORE, study_summary.SUCCESS, study_summary.PICK


def write_run(root: Path, task: str, algo: str, online: dict[int, list[float]] | None = None,
              steps: list[int] | None = None, offline: dict[int, float] | None = None,
              offline_checkpoint: str = "") -> Path:
    """A finished run dir: one offline evaluation per seed, online evaluations at `steps`."""
    run = root / task / algo
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": f"pointmaze-{task}", "algo": algo,
                                                 "offline_checkpoint": offline_checkpoint}))
    (run / "summary.json").write_text(json.dumps({"seeds": sorted(online or offline or {})}))
    lines = [{"seed": s, "phase": "offline", "offline_step": 100, SCORE: v} for s, v in (offline or {}).items()]
    for seed, scores in (online or {}).items():
        lines += [{"seed": seed, "phase": "online", "online_step": t, SCORE: v, SUCCESS: v / 100, PICK: 0.5}
                  for t, v in zip(steps, scores, strict=True)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def test_online_step0_gets_its_own_column_and_first_online_is_the_first_eval_after_it(tmp_path, capsys):
    write_run(tmp_path, "umaze", "pex", {0: [5.0, 10.0, 30.0, 70.0], 1: [60.0, 30.0, 20.0, 90.0]},
              steps=[0, 5000, 10000, 15000])
    assert study_summary.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("| task | algo | seeds | last offline | online step 0 | first online (5k) | worst online "
            "| final online (15k) |") in out
    # worst online is over the evaluations after step 0 (seed 0's 5.0 at step 0 is not its worst)
    assert "| pointmaze-umaze | pex | 2 | – | 32.5 ± 27.5 | 20.0 ± 10.0 | 15.0 ± 5.0 | 80.0 ± 10.0 | 0.8 ± 0.1 |" in out
    assert "(10k)" not in out


def test_without_a_step0_eval_there_is_no_step0_column_and_labels_follow_the_schedule(tmp_path, capsys):
    write_run(tmp_path, "umaze", "direct", {0: [10.0, 50.0]}, steps=[10000, 100000])
    assert study_summary.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| last offline | first online (10k) | worst online | final online (100k) | final success |" in out
    assert "online step 0" not in out
    assert "| pointmaze-umaze | direct | 1 | – | 10.0 ± 0.0 | 10.0 ± 0.0 | 50.0 ± 0.0 | 0.5 ± 0.0 |" in out


def test_missing_checkpoint_takes_last_offline_from_the_task_folders_offline_run(tmp_path, capsys):
    write_run(tmp_path, "large", "offline", offline={0: 42.0})
    write_run(tmp_path, "large", "pex", {0: [5.0, 9.0]}, steps=[10000, 20000],
              offline_checkpoint="/nonexistent/study/large/offline")
    assert study_summary.main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| pointmaze-large | pex | 1 | 42.0 ± 0.0 | 5.0 ± 0.0 |" in captured.out
    assert "/nonexistent/study/large/offline not found" in captured.err


def test_unfinished_run_is_left_out_with_one_line_and_shown_marked_on_request(tmp_path, capsys):
    write_run(tmp_path, "umaze", "pex", {0: [10.0, 50.0]}, steps=[10000, 20000])
    live = write_run(tmp_path, "umaze", "direct", {0: [30.0, 20.0]}, steps=[10000, 20000])
    (live / "summary.json").unlink()
    with (live / "metrics.jsonl").open("a") as f:
        f.write('{"seed": 0, "phase": "onl')  # torn by the crash
    assert study_summary.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("left out") == 1 and f"left out {live}: unfinished" in out
    assert "| direct" not in out
    assert study_summary.main([str(tmp_path), "--include-unfinished"]) == 0
    out = capsys.readouterr().out
    assert "| pointmaze-umaze | direct [unfinished] | 1 | – | 30.0 ± 0.0 | 20.0 ± 0.0 | last eval 20.0 ± 0.0 " \
           "| last eval 0.2 ± 0.0 |" in out
    assert "| final online (20k) |" in out  # the step label comes from finished runs
    assert "| pointmaze-umaze | pex | 1 | – | 10.0 ± 0.0 | 10.0 ± 0.0 | 50.0 ± 0.0 | 0.5 ± 0.0 |" in out


def test_diverged_run_is_shown_with_its_seed_and_step(tmp_path, capsys):
    run = write_run(tmp_path, "umaze", "pex", {3: [10.0, 50.0]}, steps=[10000, 20000])
    (run / "summary.json").write_text(json.dumps(
        {"status": "diverged", "diverged": {"seed": 3, "step": 12000, "phase": "online"}}))
    assert study_summary.main([str(tmp_path)]) == 1
    assert "diverged (seed 3, online step 12000)" in capsys.readouterr().out
    assert study_summary.main([str(tmp_path), "--include-unfinished"]) == 0
    assert "| pex [diverged (seed 3, online step 12000)] | 1 |" in capsys.readouterr().out


def test_pointmaze_page_results_table_follows_from_its_committed_runs(capsys):
    """docs/results/pointmaze.md pastes this script's table: every pasted row must still be one it prints."""
    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    pasted = [line for line in (root / "pointmaze.md").read_text().splitlines() if line.startswith("| pointmaze-")]
    assert len(pasted) >= 20
    assert study_summary.main([str(root / "pointmaze_runs")]) == 0
    printed = set(capsys.readouterr().out.splitlines())
    stale = [line for line in pasted if line not in printed]
    assert not stale, f"pointmaze.md rows that the runs no longer give (rerun experiments/study_summary.py): {stale}"
