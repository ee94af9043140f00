"""`make demo` (experiments/demo.py) end to end at toy scale."""

from experiments import demo


def test_demo_runs_offline_direct_pex_and_prints_the_score_table(tmp_path, monkeypatch, capsys):
    from pex_jax.data.generate import generate_pointmaze

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    generate_pointmaze(maze="umaze", steps=3000, noise=0.5, seed=0, dataset_id=demo.DEMO_ID, ref_episodes=2,
                       progress=False)  # present, so the demo skips its 100k-step generation
    assert demo.main(["--offline-steps", "200", "--online-steps", "400", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    table = out[out.index("| algorithm | after offline | after online |"):].splitlines()
    assert [row.split("|")[1].strip() for row in table[2:5]] == ["offline", "direct", "pex"]
    assert (tmp_path / "out" / "report" / "report.md").exists()
    assert any((tmp_path / "out" / "report").glob("curves_*.png"))


def test_demo_rejects_a_bad_argument_with_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert demo.main(["--offline-steps", "-1", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "offline_steps" in err[-1]
    assert not (tmp_path / "minari").exists()  # it failed before generating the 100k-step dataset
