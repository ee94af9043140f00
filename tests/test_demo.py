"""`make demo` (experiments/demo.py): the text chart and the computed closing sentence, then end to end
at toy scale."""

import re

from experiments import demo
from experiments.demo import Curve, summarize_demo, text_chart

OFFLINE = [(5000, 40.0), (10000, 80.0), (15000, 100.0)]


def _curves(pex_online, direct_online):
    return {"offline": Curve(OFFLINE, []), "direct": Curve(OFFLINE, direct_online), "pex": Curve(OFFLINE, pex_online)}


def test_summary_pex_keeps_the_offline_score_at_step0_dips_and_ties_at_the_end():
    text = summarize_demo(_curves(pex_online=[(0, 95.0), (5000, 90.0), (10000, 20.0), (15000, 95.0)],
                                  direct_online=[(0, 100.0), (5000, 100.0), (10000, 90.0), (15000, 100.0)]))
    assert text.startswith("Offline IQL ended at 100.0.")
    assert "PEX: at online step 0 95.0, kept the offline score (within 10); dipped to 20.0 at 10k steps; " \
           "ended at 95.0 after 15k steps, at the offline level." in text
    assert "direct: at online step 0 100.0, kept the offline score (within 10); never more than 10 below it; " \
           "ended at 100.0 after 15k steps, at the offline level." in text
    assert text.endswith("At the end PEX and direct tie (within 10 points).")


def test_summary_pex_drops_at_step0_and_ends_below_direct():
    text = summarize_demo(_curves(pex_online=[(0, 60.0), (5000, 50.0), (10000, 70.0)],
                                  direct_online=[(0, 100.0), (5000, 95.0), (10000, 100.0)]))
    assert "PEX: at online step 0 60.0, dropped 40 points; dipped to 50.0 at 5k steps; " \
           "ended at 70.0 after 10k steps, below the offline level (-30)." in text
    assert text.endswith("At the end direct is ahead by 30 points.")


def test_summary_without_an_offline_score_says_so():
    assert summarize_demo({}).startswith("No offline evaluation")


def test_text_chart_has_one_sparkline_row_per_algorithm_split_at_the_switch():
    lines = text_chart(_curves(pex_online=[(0, 100.0), (5000, 0.0)], direct_online=[(0, 50.0), (5000, 100.0)]),
                       seeds="0-1").splitlines()
    assert lines[0].startswith("Learning curves (100 x success rate, mean of seeds 0-1")
    assert "offline: 5k..15k updates, every 5k  |  online: 0..5k env steps, every 5k" in lines[1]
    rows = {line.split()[0]: line for line in lines[2:] if line.split() and line.split()[0] in demo.ALGOS}
    assert list(rows) == ["offline", "direct", "pex"]
    assert rows["pex"].split()[1:4] == ["▄▇█", "|", "█▁"]  # offline 40 80 100 | online 100 0
    assert rows["direct"].split()[3] == "▅█"
    assert "offline end 100.0  step 0 100.0  end   0.0" in rows["pex"]
    assert lines[lines.index(rows["pex"]) + 1].split() == ["scores:", "100", "0"]
    assert lines[lines.index(rows["offline"]) + 1].split() == ["scores:", "40", "80", "100"]


def test_demo_runs_offline_direct_pex_and_prints_the_chart_and_summary(tmp_path, monkeypatch, capsys):
    from pex_jax.datagen.pointmaze import generate_pointmaze

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    generate_pointmaze(maze="umaze", steps=3000, noise=0.5, seed=0, dataset_id=demo.DEMO_ID, ref_episodes=2,
                       progress=False)  # present, so the demo skips its 100k-step generation
    out_dir = tmp_path / "out"
    assert demo.main(["--offline-steps", "250", "--online-steps", "400", "--eval-episodes", "1",
                      "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    chart = out[out.index("Learning curves (100 x success rate, seed 0;"):].splitlines()
    assert "offline: 50..250 updates, every 50  |  online: 0..400 env steps, every 50" in chart[1]
    rows = [line.split() for line in chart[2:8] if line.strip() and line.split()[0] in demo.ALGOS]
    assert [r[0] for r in rows] == ["offline", "direct", "pex"]
    for r in rows:
        assert re.fullmatch(f"[{demo.BLOCKS}]{{5}}", r[1]) and r[2] == "|"  # 5 offline evaluations | online
    for r in rows[1:]:
        assert re.fullmatch(f"[{demo.BLOCKS}]{{9}}", r[3])  # online step 0, 50, ..., 400
    # The closing sentence is the one computed from the run's own logged evaluations.
    curves = demo.load_curves(out_dir)
    assert [s for s, _ in curves["pex"].online] == list(range(0, 401, 50))
    assert summarize_demo(curves) in out
    assert demo.FINDING in out
    png = re.search(r"Learning curves PNG: (\S+)", out).group(1)
    assert png.endswith(".png") and (out_dir / "report" / "report.md").exists()
    assert (out_dir / "report").joinpath(png.rsplit("/", 1)[-1]).exists()


def test_demo_rejects_a_bad_argument_with_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert demo.main(["--offline-steps", "-1", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "offline_steps" in err[-1]
    assert not (tmp_path / "minari").exists()  # it failed before generating the 100k-step dataset
