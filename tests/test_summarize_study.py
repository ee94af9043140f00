"""The study summary: headline numbers from hand-written run dirs, the algorithm filter, the domains, the PNG names."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import summarize_study as summary

SCORE, PICK = summary.SCORE, summary.PICK


def write_run(root: Path, task: str, algo: str, offline: dict[int, list[float]] | None = None,
              online: dict[int, list[float]] | None = None, pick: dict[int, list[float]] | None = None) -> Path:
    """A finished run dir: offline evals every 10 updates, online evals at 0, 5k, 10k, ... env steps."""
    run = root / task / algo
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"algo": algo, "offline_steps": 10 * len(next(iter(
        (offline or {0: [0.0]}).values())))}))
    (run / "summary.json").write_text(json.dumps({"timing": {"wall_s": 60.0}}))
    lines = []
    for seed, scores in (offline or {}).items():
        lines += [{"seed": seed, "phase": "offline", "offline_step": 10 * (i + 1), SCORE: s}
                  for i, s in enumerate(scores)]
    for seed, scores in (online or {}).items():
        for i, s in enumerate(scores):
            row = {"seed": seed, "phase": "online", "online_step": 5000 * i, SCORE: s}
            if pick:
                row[PICK] = pick[seed][i]
            lines.append(row)
        lines.append({"seed": seed, "phase": "online", "online_step": 7000, "train/critic_loss": 1.0})  # not an eval
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return run


@pytest.fixture
def study_root(tmp_path: Path) -> Path:
    write_run(tmp_path, "umaze", "offline", offline={0: [0.0, 60.0], 1: [10.0, 80.0]})
    write_run(tmp_path, "umaze", "pex", online={0: [20.0, 0.0, 90.0], 1: [70.0, 40.0, 100.0]},
              pick={0: [0.2, 0.1, 0.3], 1: [0.8, 0.5, 0.4]})
    write_run(tmp_path, "umaze", "sac", online={0: [0.0, 0.0, 10.0], 1: [0.0, 10.0, 30.0]})
    unfinished = write_run(tmp_path, "umaze", "direct", online={0: [1.0]})
    (unfinished / "summary.json").unlink()
    return tmp_path


def test_headline_rows_give_step0_first_worst_and_final_per_seed(study_root):
    rows = {r["algo"]: r for r in summary.headline_rows(summary.load_study(study_root))}
    assert list(rows) == ["offline", "pex", "sac"]  # study order; the unfinished direct run is left out
    pex = rows["pex"]
    assert pex["last_offline"] == [60.0, 80.0]
    assert pex["step0"] == [20.0, 70.0]
    assert pex["first"] == [0.0, 40.0]
    assert pex["worst"] == [0.0, 40.0]
    assert pex["final"] == [90.0, 100.0]
    assert rows["offline"]["final"] == [60.0, 80.0]  # the never fine-tuned policy: its last offline score
    assert rows["sac"]["last_offline"] == [None, None]  # no pre-training, no offline score


def test_tables_report_mean_std_and_the_offline_pick_rate(study_root):
    text = summary.tables(summary.load_study(study_root))
    assert "| umaze | pex | 2 | 70.0 ± 10.0 | 45.0 ± 25.0 | 20.0 ± 20.0 | 20.0 ± 20.0 | 95.0 ± 5.0 |" in text
    assert "0k: 0.50, 5k: 0.30, 10k: 0.35" in text
    assert "| task | algo | 0k | 5k | 10k |" in text
    assert "| umaze | pex | 45.0 | 20.0 | 95.0 |" in text  # mean over seeds at every online evaluation
    assert "| umaze | sac | 0.0 | 5.0 | 20.0 |" in text
    assert "| umaze | offline | 60.0" not in text  # the offline row has no online curve
    assert "over 3 runs" in text


def test_critic_table_follows_the_training_batches_mean_q_at_a_stride_and_only_on_request(tmp_path):
    run = write_run(tmp_path, "umaze", "pex", online={0: [10.0, 20.0], 1: [30.0, 40.0]})
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for step in range(6000, 121_000, 1000):  # training lines every 1000 env steps from the first update
        lines += [{"seed": 0, "phase": "online", "online_step": step, "train/q_mean": -step / 1000},
                  {"seed": 1, "phase": "online", "online_step": step, "train/q_mean": step / 1000}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    study = summary.load_study(tmp_path)
    [(task, algo, phase, cells)] = summary.critic_rows(study)
    assert (task, algo, phase) == ("umaze", "pex", "online")
    # 120k over at most 20 cells: a stride of 10k, plus the first logged step
    assert [t for t, _, _ in cells] == [6000, *range(10_000, 120_001, 10_000)]
    assert cells[1] == (10_000, 0.0, [-10.0, 10.0])
    text = summary.tables(study, critic=True)
    assert "| umaze | pex | online | 6k: 0.0 (-6 / 6), 10k: 0.0 (-10 / 10)," in text
    assert "train/q_mean" not in summary.tables(study)


def test_training_success_table_averages_the_logged_success_per_window_and_skips_logs_without_episodes(tmp_path):
    run = write_run(tmp_path, "umaze", "direct", online={0: [10.0, 20.0], 1: [30.0, 40.0]})
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for step in range(1000, 45_001, 1000):  # 45k logged: windows of 5k (9 of them), the last one cut at 45k
        lines += [{"seed": 0, "phase": "online", "online_step": step, "train/is_success": float(step > 40_000)},
                  {"seed": 1, "phase": "online", "online_step": step,
                   "train/is_success": None if step <= 5000 else 0.5}]  # no episode ended in the first 5k
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    study = summary.load_study(tmp_path)
    [(task, algo, windows)] = summary.training_success_rows(study)
    assert (task, algo) == ("umaze", "direct")
    assert [(lo, hi) for lo, hi, _, _ in windows] == [(k, k + 5000) for k in range(0, 45_000, 5000)]
    lo, hi, mean, per = windows[0]
    assert per[0] == 0.0 and np.isnan(per[1]) and mean == 0.0  # a seed without episodes is left out of the mean
    assert windows[-1][2:] == (0.75, [1.0, 0.5])  # steps 41k-45k: seed 0 succeeded, seed 1 half the time
    text = summary.tables(study, critic=True)
    assert "| umaze | direct | 0-5k: 0.00 (0.00 / –), 5-10k: 0.25 (0.00 / 0.50)," in text
    assert "train/is_success" not in summary.tables(study)


def test_the_points_of_a_grid_count_their_one_process_once(tmp_path):
    for t in (30, 100):
        run = write_run(tmp_path, "umaze", f"pex@inv_temperature={t}", online={0: [20.0, 90.0]})
        (run / "config.json").write_text(json.dumps({"algo": "pex", "grid": "inv_temperature=30,100"}))
    text = summary.tables(summary.load_study(tmp_path))
    assert "0.02 h of wall clock over 2 runs in 1 process group(s)" in text  # 60 s, not 120 s
    assert text.index("pex@inv_temperature=30 |") < text.index("pex@inv_temperature=100 |")  # by value


def test_compute_sums_every_process_of_resumed_runs_counts_a_shared_process_once_and_names_partial_counts(
        tmp_path):
    def timed(algo, timing, online=None):
        run = write_run(tmp_path, "umaze", algo, online=online or {0: [10.0, 20.0]})
        (run / "summary.json").write_text(json.dumps({"timing": timing}))
        return run

    timed("offline", {"wall_s": 60.0, "compute_s": 3600.0, "compute_counted_from": None})  # resumed: 1 h in all
    for algo in ("pex", "direct"):  # trained in one call: one process
        timed(algo, {"wall_s": 1800.0, "compute_s": 1800.0, "compute_counted_from": None,
                     "shared_by": ["umaze-direct", "umaze-pex"]})
    running = timed("buffer", {})
    (running / "summary.json").unlink()
    for step, seconds in ((10000, 360.0), (20000, 720.0)):  # the newest checkpoint's clock counts
        ckpt = running / "checkpoints" / f"online-{step:012d}-packed"
        ckpt.mkdir(parents=True)
        (ckpt / "state.msgpack").write_bytes(b"")
        (ckpt / "host.json").write_text(json.dumps({"phase": "online", "step": step, "compute_s": seconds,
                                                    "compute_counted_from": {"phase": "online", "step": 5000}}))
    text = summary.tables(summary.load_study(tmp_path, include_unfinished=True))
    assert "1.70 h of wall clock over 4 runs in 3 process group(s)" in text  # 3600 + 1800 + 720 s
    assert "without the processes before it: umaze / buffer from online step 5,000." in text
    assert "last process only" not in text and "no timing" not in text


def test_algos_filter_keeps_the_offline_row_and_tags_the_outputs(study_root, tmp_path):
    out = tmp_path / "out"
    assert summary.main([str(study_root), "--out", str(out), "--algos", "sac", "--tasks", "umaze", "--tag", "sac"]) == 0
    text = (out / "antmaze_tables-sac.md").read_text()
    assert "| umaze | sac |" in text and "| umaze | offline |" in text and "| umaze | pex |" not in text
    assert (out / "curves_antmaze-umaze-sac.png").stat().st_size > 0
    assert not (out / "antmaze_tables.md").exists()


def test_no_finished_runs_is_an_error(tmp_path, capsys):
    assert summary.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "no finished runs" in capsys.readouterr().err


def test_locomotion_domain_orders_tasks_and_names_its_outputs(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "out"
    for task in ("halfcheetah-medium", "hopper-medium"):
        write_run(root, task, "offline", offline={0: [30.0, 45.0]})
        write_run(root, task, "pex", online={0: [40.0, 120.0]})  # normalized returns may pass 100
    assert list(summary.load_study(root, domain="locomotion")) == ["hopper-medium", "halfcheetah-medium"]
    assert summary.main([str(root), "--out", str(out), "--domain", "locomotion"]) == 0
    text = (out / "locomotion_tables.md").read_text()
    assert "| hopper-medium | pex | 1 | 45.0 ± 0.0 | 40.0 ± 0.0 | 120.0 ± 0.0 |" in text
    assert (out / "curves_locomotion-hopper-medium.png").stat().st_size > 0
    assert not (out / "antmaze_tables.md").exists()


def test_unfinished_run_is_left_out_with_one_line_in_the_output_and_the_tables(study_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert summary.main([str(study_root), "--out", str(out)]) == 0
    line = f"left out {study_root / 'umaze' / 'direct'}: unfinished"
    assert capsys.readouterr().out.count("left out") == 1
    text = (out / "antmaze_tables.md").read_text()
    assert line in text
    assert "| umaze | direct" not in text


def test_include_unfinished_marks_the_algo_and_labels_final_as_the_last_eval(study_root, tmp_path):
    out = tmp_path / "out"
    assert summary.main([str(study_root), "--out", str(out), "--include-unfinished"]) == 0
    text = (out / "antmaze_tables.md").read_text()
    assert "| umaze | direct [unfinished] | 1 | 60.0 ± 0.0 | 1.0 ± 0.0 | – | – | last eval 1.0 ± 0.0 |" in text
    assert "| umaze | direct [unfinished] | 60 | 1 | – | – | last eval 1 |" in text  # per seed
    assert "| umaze | pex | 2 | 70.0 ± 10.0 | 45.0 ± 25.0 | 20.0 ± 20.0 | 20.0 ± 20.0 | 95.0 ± 5.0 |" in text
    assert "left out" not in text
    assert "over 4 runs in 4 process group(s)" in text and "1 process group(s) have no timing" in text


def test_diverged_run_is_shown_with_its_seed_and_step(study_root, tmp_path, capsys):
    diverged = {"status": "diverged", "diverged": {"seed": 1, "step": 5000, "phase": "online"}}
    (study_root / "umaze" / "sac" / "summary.json").write_text(json.dumps(diverged))
    assert summary.main([str(study_root), "--out", str(tmp_path / "a")]) == 0
    assert f"left out {study_root / 'umaze' / 'sac'}: diverged (seed 1, online step 5000)" in capsys.readouterr().out
    assert summary.main([str(study_root), "--out", str(tmp_path / "b"), "--include-unfinished"]) == 0
    text = (tmp_path / "b" / "antmaze_tables.md").read_text()
    assert "| umaze | sac [diverged (seed 1, online step 5000)] | 2 |" in text
    assert "| umaze | sac [diverged (seed 1, online step 5000)] | 0.0 | 5.0 | 20.0 |" in text  # the mean curve


def test_a_summary_without_status_is_finished_and_failed_or_preempted_are_not(tmp_path):
    write_run(tmp_path, "umaze", "offline", offline={0: [50.0]})
    for algo, state in (("pex", "finished"), ("direct", "failed"), ("sac", "preempted")):
        run = write_run(tmp_path, "umaze", algo, online={0: [10.0, 20.0]})
        (run / "summary.json").write_text(json.dumps({"status": state}))
    left_out: list[str] = []
    assert set(summary.load_study(tmp_path, left_out=left_out)["umaze"]) == {"offline", "pex"}
    assert sorted(line.split(": ")[1].split(" ")[0] for line in left_out) == ["failed", "preempted"]
