"""`bench.md` and the lines `make bench` prints at the end, rebuilt from `bench.json`'s measured fields alone:
every ratio, fraction of the ceiling and projected hour is computed here, not read back."""

from __future__ import annotations

from pex_jax.tools.bench.ceiling import fraction_of_ceiling
from pex_jax.tools.bench.projection import projection


def f(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ms(x: float) -> str:
    return f"{x:.3g}"


def ratio_text(r: dict) -> str:
    return f"{r['best']:.2f} / {r['median']:.2f}"


def bm(d: dict) -> str:
    return f"{f(d['best'])} / {f(d['median'])}"


def ms_bm(rates: dict) -> str:
    """A rate's best / median as milliseconds per call."""
    return f"{ms(1e3 / rates['best'])} / {ms(1e3 / rates['median'])}"


def pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2g}%"


def frac_bm(rates: dict, flops: float | None, peak: float | None) -> str:
    """Best / median of a rate as fractions of the ceiling, computed here from the measured fields."""
    best, median = (fraction_of_ceiling(rates[k], flops, peak) for k in ("best", "median"))
    return "-" if best is None else f"{pct(best)} / {pct(median)}"


def speedup(case: dict) -> dict[str, float]:
    """An engine case's workers on / off: best over best, median over median."""
    return {k: case["workers"][k] / case["baseline"][k] for k in ("best", "median")}


def _device(result: dict) -> dict | None:
    return (result.get("components") or {}).get("device")


def ceiling_rows(result: dict) -> list[tuple[str, float]]:
    """(work, FLOPs each) for every kind of work in the run, from XLA's cost analysis."""
    rows: list[tuple[str, float]] = []
    offline_flops = next((r.get("flops_per_update") for r in result.get("offline") or [] if r.get("flops_per_update")),
                         None)
    if offline_flops:
        rows.append(("offline IQL update (1 seed)", offline_flops))
    d = _device(result)
    if d and d.get("flops_per_call"):
        rows.append((f"engine step, {d['agents']} agents (update + act)", d["flops_per_call"]))
    if (result.get("act") or {}).get("flops_per_call"):
        rows.append((f"{result['act']['algo']} action selection", result["act"]["flops_per_call"]))
    return rows


def all_fractions(result: dict) -> list[float]:
    """Best-window fractions of the ceiling of the offline rates and the engine step, recomputed here."""
    peak = (result.get("ceiling") or {}).get("peak_gflops")
    out = [fraction_of_ceiling(r["fused_total"]["best"], r.get("flops_per_update"), peak)
           for r in result.get("offline") or []]
    d = _device(result)
    if d:
        out.append(fraction_of_ceiling(d["calls_per_s"]["device_call"]["best"], d.get("flops_per_call"), peak))
    return [x for x in out if x is not None]


def to_markdown(result: dict) -> str:
    """The report, rebuilt from the JSON's measured fields alone (ratios, fractions and projections computed here)."""
    m, cfg = result["machine"], result["config"]
    ceiling = result.get("ceiling") or {}
    peak = ceiling.get("peak_gflops")
    lines = [
        "# pex-jax benchmark",
        "",
        f"Run {m.get('date', '?')} on {m['platform']} ({m['device_kind']}) x{m['device_count']}, CPU {m['cpu']}, "
        f"{m['cpu_affinity']} usable cores; jax {m['jax']}; commit {m['git_commit'] or '?'}"
        f"{' + working-tree changes' if m.get('git_dirty') else ''}; "
        f"XLA_FLAGS={m['xla_flags']!r}; load average {result['load_before']} -> {result['load_after']}.",
        f"Shapes: obs {cfg['obs_dim']}, act {cfg['act_dim']}, hidden {tuple(cfg['hidden_dims'])} (the engine's "
        f"whole-phase runs: their own, below), batch {cfg['batch_size']}. Figures are best / median over interleaved "
        "windows. Three kinds: ratios to an in-run baseline; fractions of this device's matmul ceiling, measured in "
        "this run; and, when asked for, the reference PyTorch PEX measured side by side in this run. Figures from "
        "elsewhere appear only under Context; the projection's assumptions are named with it.",
        "",
    ]
    if ceiling:
        lines += _ceiling_markdown(result, ceiling, peak)
    if result.get("offline"):
        lines += _offline_markdown(result["offline"], peak)
    if result.get("engine"):
        lines += engine_markdown(result["engine"], result.get("components"))
    if result.get("components"):
        lines += components_markdown(result["components"], peak)
        lines += projection_markdown(projection(result["components"]))
    if result.get("act"):
        a = result["act"]
        lines += ["## Action selection (1 seed, 1 observation, host round trip)", "",
                  f"{a['algo']}: {bm(a['act_per_s'])} per s; fraction of ceiling "
                  f"{frac_bm(a['act_per_s'], a.get('flops_per_call'), peak)} (a latency figure: one observation "
                  "uses a sliver of the device).", ""]
    if result.get("side_by_side"):
        lines += side_by_side_markdown(result["side_by_side"], peak)
    if result.get("multitask"):
        lines += _multitask_markdown(result, peak)
    if result.get("grid"):
        lines += grid_markdown(result["grid"])
    lines += ["## Compile times (s)", "", "| what | seconds |", "|---|---|"]
    for name, sec in result["compile_s"].items():
        lines.append(f"| {name} | {sec:.2f} |" if sec >= 0.01 else f"| {name} | cached (same program compiled above) |")
    mem = result["memory"]
    lines += ["", "## Memory", "", f"Peak RSS {mem['peak_rss_mib']:.0f} MiB; device memory: "
              f"{mem['device_memory'] if mem['device_memory'] else 'not reported by this backend'}.", ""]
    if "scaling_check" in result:
        c = result["scaling_check"]
        lines += ["## Seed scaling check", "",
                  f"total({c['seeds']} seeds) = {f(c['total'])} vs {c['required_fraction']} x {c['seeds']} x "
                  f"single-seed {f(c['single'])} = {f(c['required'])}: {'PASS' if c['passed'] else 'FAIL'}", ""]
    if result.get("context"):
        lines += ["## Context: figures not measured in this run (never used in a ratio)", "",
                  "| figure | value | measured |", "|---|---|---|"]
        lines += [f"| {c['figure']} | {c['value']} | {c['measured']} |" for c in result["context"]]
        lines.append("")
    return "\n".join(lines)


def _ceiling_markdown(result: dict, ceiling: dict, peak: float) -> list[str]:
    lines = ["## Ceiling (measured in this run)", "",
             "| XLA f32 matmul | shape | GFLOP/s (best / median) | windows |", "|---|---|---|---|"]
    for name, x in ceiling["matmul"].items():
        chain = f", {x['chained']} chained per call" if x["chained"] > 1 else ""
        lines.append(f"| {name} | ({x['m']} x {x['k']}) @ ({x['k']} x {x['n']}){chain} | {bm(x)} | {x['windows']} |")
    update_rate = ceiling["matmul"].get("update shape", {}).get("best")
    lines += ["", f"Peak: **{f(peak)} GFLOP/s** (best window, {ceiling['peak_from']}; windows at the start and the end "
              "of the run and interleaved with the offline windows and the engine step's). A rate's fraction of the "
              "ceiling = rate x FLOPs each (XLA's cost analysis of the compiled executable) / peak.", "",
              "| work | GFLOP each | ceiling at the peak (per s) | at the update-shape matmul rate (per s) |",
              "|---|---|---|---|"]
    for name, flops in ceiling_rows(result):
        at_update = f(update_rate * 1e9 / flops) if update_rate else "-"
        lines.append(f"| {name} | {flops / 1e9:.3g} | {f(peak * 1e9 / flops)} | {at_update} |")
    top = max(all_fractions(result), default=0.0)
    if top > 1:
        lines += ["", f"Some rates reach {pct(top)} of this peak: every matmul window fell in a busier spell than "
                  "those rates' best windows (a shared machine), so the peak here is a lower bound."]
    return lines + [""]


def _offline_markdown(offline: list[dict], peak: float | None) -> list[str]:
    lines = ["## Offline IQL updates/s", "",
             "| seeds | fused per seed | fused total | per-update-call baseline per seed | ratio (best / median) "
             "| total, fraction of ceiling | total / 1-seed total | total / (seeds x 1-seed total) "
             "| seeds looped / vmapped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in offline:
        rr, eff = r["ratio_to_baseline"], r.get("efficiency_vs_1_seed")
        vs_one = f"{eff * r['seeds']:.2f}" if eff else "-"
        lines.append(
            f"| {r['seeds']}{' (sharded)' if r['sharded'] else ''} | {bm(r['fused_per_seed'])} "
            f"| {bm(r['fused_total'])} | {bm(r['baseline_per_seed'])} | {rr['best']:.2f} / {rr['median']:.2f} "
            f"| {frac_bm(r['fused_total'], r.get('flops_per_update'), peak)} "
            f"| {vs_one} | {f'{eff:.2f}' if eff else '-'} "
            f"| {ratio_text(r['looped_to_vmap']) if 'looped_to_vmap' in r else '-'} |")
    return lines + [""]


def _share(case: dict, mode: str) -> str:
    shares = sorted(r["eval_blocking_s"] / r["online_wall_s"] for r in case["runs"] if r["mode"] == mode)
    return pct(shares[len(shares) // 2]) if shares else "-"


def _procs(case: dict) -> str:
    on = [r for r in case["runs"] if r["mode"] == "workers"]
    return f"{on[0]['env_workers']} / {on[0]['eval_workers']} / {on[0].get('pipeline_lanes', 1)}" if on else "-"


def serial_ms(components: dict | None) -> float | None:
    """The acceptance case's step with every env step and evaluation hidden: its device call, insert, the two
    transfers and the host's packing (best windows; ms)."""
    d = (components or {}).get("device_acceptance")
    if not d:
        return None
    c = d["calls_per_s"]
    host = next((h for h in components["host"].values() if h["agents"] == d["agents"]), None)
    pack = 1e3 / host["pack_step"]["best"] if host else 0.0
    return sum(1e3 / c[k]["best"] for k in ("device_call", "insert", "upload", "download")) + pack


def cpu_bound(acc: dict, components: dict | None, cores: int) -> dict | None:
    """What any overlap can reach on `cores` cores: a step's CPU work (the device call's CPU time, every
    agent's env step, the evaluation's share per training step from the baseline runs, the host's packing)
    spread perfectly over the cores, against the best baseline step. None without the components."""
    d = (components or {}).get("device_acceptance")
    if not d or "device_call_cpu_ms" not in d or "env_step" not in components \
            or not all("eval_rounds" in r for r in acc["runs"]):
        return None
    base = [r for r in acc["runs"] if r["mode"] == "baseline"]
    eval_ms = min(1e3 * r["eval_s"] / r["eval_rounds"] / r["eval_every"] for r in base)
    host = next((h for h in components["host"].values() if h["agents"] == d["agents"]), None)
    parts = {"device call": d["device_call_cpu_ms"]["best"],
             "env steps": d["agents"] * 1e3 / components["env_step"]["steps_per_s"]["best"],
             "evaluation": eval_ms, "packing": 1e3 / host["pack_step"]["best"] if host else 0.0}
    cpu = sum(parts.values())
    base_ms = 1e3 / acc["baseline"]["best"]
    return {"parts_ms": parts, "cpu_ms": cpu, "cores": cores, "step_ms": cpu / cores, "baseline_ms": base_ms,
            "max_speedup": base_ms / (cpu / cores)}


def engine_markdown(engine: dict, components: dict | None = None) -> list[str]:
    c = engine["cadence"]
    ref = c["reference"]
    lines = [
        "## The online engine: whole online phase, workers off vs on (measured in this run)", "",
        f"`pex_jax.finetune.finetune` on local AntMaze datasets (D4RL AntMaze env), PEX from initial offline "
        f"states, UTD 1. Workers off = `env_workers=0, eval_workers=0, pipeline_lanes=1` (envs in the trainer, "
        f"evaluation blocking, nothing overlapped: the loop before the engine); on = "
        f"`env_workers={engine['workers_requested']['env_workers']}, "
        f"eval_workers={engine['workers_requested']['eval_workers']}`, pipeline lanes "
        f"{engine['workers_requested'].get('pipeline_lanes', 'default')} ({engine['cores']} usable cores). Runs "
        f"alternate (off, on, on, off, ...). Evaluation: {c['episodes']} episode(s) per seed every {c['eval_every']} "
        f"env steps, headline ones included, untrained policies (every episode runs to the time limit T): "
        f"{c['eval_steps_per_step_in_T']:.2g} T evaluation env steps per seed and training env step, as the "
        f"reference's {ref['interim_episodes']} episodes of {ref['episode_fraction']} T every {ref['eval_every']:,} "
        f"({ref['eval_steps_per_step_in_T']:.2g} T). The rate is taken between the engine's log rows at env step "
        f"{c['warmup']} and {c['online_steps']} ({c['cycles']} evaluation interval(s); compiles, worker start-up "
        f"and the step-0 evaluation before it).", "",
        "| tasks x seeds | nets | agents | workers off, env-steps/s | workers on | on / off (best / median) "
        "| env / eval processes / lanes on | agent env-steps/s on (best) | share of the wall clock training waited for "
        "evaluation, off / on |",
        "|---|---|---|---|---|---|---|---|---|"]
    cases = list(engine["cases"])
    acc = engine.get("acceptance")
    if acc and not acc.get("reused"):
        cases.append(acc)
    for case in cases:
        s = speedup(case)
        lines.append(f"| {case['label']} | {'x'.join(map(str, case['hidden']))} | {case['agents']} "
                     f"| {bm(case['baseline'])} | {bm(case['workers'])} | **{s['best']:.2f}x** / {s['median']:.2f}x "
                     f"| {_procs(case)} | {f(case['workers']['best'] * case['agents'])} "
                     f"| {_share(case, 'baseline')} / {_share(case, 'workers')} |")
    lines.append("")
    if acc:
        s = speedup(acc)
        verdict = "meets" if s["best"] >= acc["target"] else "misses"
        lines += [f"**Acceptance** ({acc['label']}, {'x'.join(map(str, acc['hidden']))} nets, workers on vs off + "
                  f"in-process evaluation): **{s['best']:.2f}x** best, {s['median']:.2f}x median; {verdict} the "
                  f"target of {acc['target']}x (best windows)."]
        serial = serial_ms(components)
        if serial:
            base = 1e3 / acc["baseline"]["best"]
            lines += [f"Workers can hide the env steps and the evaluations, not the device call: with all of them "
                      f"hidden a step would still cost {serial:.1f} ms (one device call for the {acc['agents']} "
                      f"agents, insert, upload, download, packing; per-component figures below) against {base:.1f} "
                      f"ms per step in the best baseline run, so at most {base / serial:.2f}x on any number of cores."]
        bound = cpu_bound(acc, components, engine["cores"])
        if bound:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in bound["parts_ms"].items())
            lines += ["", f"On this machine the cores bound it first: a step's CPU work is {bound['cpu_ms']:.1f} ms "
                      f"({parts}; the device call's figure is the CPU time of all its XLA threads), so even spread "
                      f"perfectly over {bound['cores']} cores a step costs at least {bound['step_ms']:.1f} ms against "
                      f"{bound['baseline_ms']:.1f} ms in the best baseline run: at most "
                      f"**{bound['max_speedup']:.2f}x** here, whatever overlaps."]
        lines.append("")
    return lines


def components_markdown(comp: dict, peak: float | None) -> list[str]:
    d = comp["device"]
    c = d["calls_per_s"]
    lines = [
        "## Per-component costs (measured in this run)", "",
        f"At the suite's shapes: {d['tasks']} tasks x {d['seeds']} seeds = {d['agents']} agents, "
        f"{'x'.join(map(str, d['hidden']))} nets, batch {d['batch']}, UTD {d['utd']}, {d['algo']}; "
        f"datasets of {d['dataset_rows']:,} rows per task, replay {d['buffer_rows']:,} rows per agent.", "",
        "| part | ms per call (best / median) | note |", "|---|---|---|",
        f"| engine step (`make_engine_step`: every agent's update + next action) | {ms_bm(c['device_call'])} "
        f"| {d['flops_per_call'] / 1e9:.3g} GFLOP; fraction of ceiling "
        f"{frac_bm(c['device_call'], d.get('flops_per_call'), peak)} |" if d.get("flops_per_call") else
        f"| engine step (`make_engine_step`) | {ms_bm(c['device_call'])} | |",
        f"| replay insert (donated) | {ms_bm(c['insert'])} | |",
        f"| packed upload {tuple(d['upload_shape'])} float32 | {ms_bm(c['upload'])} | `jax.device_put` + block |",
        f"| packed download {tuple(d['download_shape'])} float32 | {ms_bm(c['download'])} | `np.asarray` of a "
        "computed array |"]
    for key, h in comp["host"].items():
        lines += [f"| `pack_step`, {h['agents']} agents ({key}) | {ms_bm(h['pack_step'])} | host, serial |",
                  f"| episode bookkeeping, {h['agents']} agents ({key}) | {ms_bm(h['bookkeeping'])} "
                  "| host, overlapped with the envs' step |"]
    e, v = comp["env_step"], comp["eval"]
    lines += [f"| one env step, {e['task']} (`step_one`, random actions) | {ms_bm(e['steps_per_s'])} | |",
              f"| one evaluation env step (`Evaluator`, {v['seeds']} seed(s) x {v['episodes_per_seed']} episodes, "
              f"{v['envs_per_policy_call']} envs per policy call, {'x'.join(map(str, v['hidden']))}) "
              f"| {ms(v['ms_per_env_step']['best'])} / {ms(v['ms_per_env_step']['median'])} "
              f"| one episode = {v['env_steps_per_episode']:.0f} steps: "
              f"{v['s_per_episode']['best']:.2f} / {v['s_per_episode']['median']:.2f} s |", ""]
    pools = comp["pools"]
    kinds = list(dict.fromkeys(r["pool"] for r in pools))
    lines += ["### Env pools: ms per step of all envs (best / median; start-up s)", "",
              "`NullEnv` has the ant's spaces and does nothing: its time per step is the pool's own overhead.", "",
              "| envs | env | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for n in dict.fromkeys(r["envs"] for r in pools):
        for env in ("null", "ant"):
            cells = []
            for k in kinds:
                row = next((r for r in pools if r["envs"] == n and r["env"] == env and r["pool"] == k), None)
                cells.append(f"{ms_bm(row['steps_per_s'])} ({row['startup_s']:.1f})" if row else "-")
            lines.append(f"| {n} | {env} | " + " | ".join(cells) + " |")
    return lines + [""]


def _hours(p: dict, design: str, key: str) -> str:
    """The range over the assumptions' low and high ends (either end can give the larger value)."""
    lo, hi = sorted((p[design]["low"][key], p[design]["high"][key]))
    return f"{lo:.2f}" if hi - lo < 0.005 else f"{lo:.2f}-{hi:.2f}"


def _range(design: dict, key: str) -> str:
    lo, hi = sorted((design["low"][key], design["high"][key]))
    return f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f}-{hi:.1f}"


def projection_markdown(p: dict) -> list[str]:
    s, mi = p["suite"], p["measured"]
    ep = s["eval_episodes_per_seed"]
    eng = p["engine"]
    lines = [
        f"## Projection: {s['tasks']} AntMaze tasks x {s['seeds']} seeds on {s['cores']} cores + one H100", "",
        f"{s['offline_updates']:,} offline updates + {s['online_steps']:,} online env steps per agent; evaluation "
        f"every {s['eval_every']:,}: {ep['offline']['interim'] + ep['offline']['end']:,} offline and "
        f"{ep['online']['interim'] + ep['online']['end']:,} online episodes per seed ({s['interim_episodes']} per "
        f"interim, {s['headline_episodes']} per headline evaluation) of {s['episode_fraction']} of the time limit "
        f"({', '.join(map(str, s['time_limits']))}). The model is `pex_jax.tools.bench.projection`; the hours are "
        "recomputed from this run's components.", "",
        "Measured in this run (best windows, one core of this machine): "
        f"env step {ms(mi['env_ms'])} ms; evaluation env step {ms(mi['eval_ms'])} ms; pack {ms(mi['pack_ms'])} ms and "
        f"bookkeeping {ms(mi['bookkeeping_ms'])} ms per suite step ({ms(mi['pack_task_ms'])} and "
        f"{ms(mi['bookkeeping_task_ms'])} ms for one task's seeds); EnvPool overhead {ms(mi['pool_overhead_ms'])} ms "
        "per step (NullEnv, the suite's env count, the most workers measured).", "",
        "Assumed (low-high):", ""]
    for a in p["assumptions"].values():
        lines.append(f"- {a['what']}: {a['low']:g}-{a['high']:g} {a['unit']} ({a['source']})")
    lines += [
        "- the H100 machine's cores step envs and evaluations as fast as one core here; 16 physical cores, one "
        "process each; the env pool's overhead with 15 workers of 4 envs equals the one measured here;",
        f"- the engine's defaults: {eng['low']['env_workers']} env workers ({eng['low']['envs_per_worker']} envs "
        f"each); an evaluation pool of {eng['low']['eval_workers']} processes, each task's round split into "
        f"{eng['low']['eval_jobs_per_task']} jobs of at most {eng['low']['eval_chunk_seeds']} seeds (online the "
        f"evaluations get the {_range(eng, 'eval_procs_online')} cores the env workers leave); start-up, compiles "
        "and checkpoints left out.", "",
        "| hours | the engine | today's design |",
        "|---|---|---|"]
    rows = [("online env step (ms)", "step_ms", "", " (per task)"),
            ("offline evaluations", "offline_eval_h", " (background)", " (blocking)"),
            ("offline phase", "offline_h", "", ""),
            ("online training", "online_train_h", "", ""),
            ("online evaluations", "online_eval_h", " (background)", " (blocking)"),
            ("end-of-phase headline evaluation (each phase)", "tail_h", "", None),
            ("online phase", "online_h", "", ""),
            ("**total**", "total_h", "", "")]
    for label, key, engine_note, today_note in rows:
        cells = [_hours(p, "engine", key) + engine_note,
                 "in the evaluations" if today_note is None else _hours(p, "today", key) + today_note]
        if key == "total_h":
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lo, hi = sorted(eng[b]["total_h"] for b in ("low", "high"))
    verdict = ("within 2 h over the whole range" if hi <= 2 else "within 2 h at the low end, above it at the high end"
               if lo <= 2 else "above 2 h over the whole range")
    today = sorted(p["today"][b]["total_h"] for b in ("low", "high"))
    lines += [f"The engine: {lo:.2f}-{hi:.2f} h, {verdict} of the assumptions; today's design {today[0]:.1f}-"
              f"{today[1]:.1f} h.", ""]
    return lines


def _multitask_markdown(result: dict, peak: float | None) -> list[str]:
    t = result["multitask"]
    rr = t["ratio_to_sequential"]
    vr = t.get("vmapped_ratio_to_sequential") or {"best": float("nan"), "median": float("nan")}
    offline_flops = next((r.get("flops_per_update") for r in result.get("offline") or []), None)
    return ["## Several tasks in one call (offline)", "",
            "| tasks x seeds | one call, updates/s total | one call per task | ratio (best / median) "
            "| all pairs vmapped, ratio | one call, fraction of ceiling |",
            "|---|---|---|---|---|---|",
            f"| {t['tasks']} x {t['seeds_per_task']} | {bm(t['multitask_updates_per_s_total'])} "
            f"| {bm(t['sequential_updates_per_s_total'])} | {rr['best']:.2f} / {rr['median']:.2f} "
            f"| {vr['best']:.2f} / {vr['median']:.2f} "
            f"| {frac_bm(t['multitask_updates_per_s_total'], offline_flops, peak)} |", ""]


def side_by_side_markdown(sbs: dict, peak: float | None) -> list[str]:
    ref, threads = sbs["reference"], sbs["threads"]
    sh = sbs["shapes"]
    commit = ref.get("commit", "?")
    lines = [
        "## The reference PyTorch PEX, side by side (measured in this run)", "",
        f"Reference {commit[:7] if len(commit) == 40 else commit} from {ref.get('origin', '?')}; torch "
        f"{ref.get('torch', '?')} on {ref.get('device', '?')}, Python {ref.get('python', '?')}, in its own venv and "
        f"process. Its own IQL and PEX classes, networks, ReplayMemory and batch samplers, built as its "
        f"main_offline.py / main_online.py build them, at 1 seed, obs {sh['obs']}, act {sh['act']}, hidden "
        f"{tuple(sh['hidden'])}, batch {sh['batch']} ({sbs['dataset_rows']:,}-row dataset; online memory "
        f"{ref.get('buffer_rows', 0):,} rows, pex-jax's buffer {sbs['project_buffer_rows']:,}). Windows of "
        f"{sbs['window_s']} s alternate between pex-jax and the reference at {', '.join(map(str, threads))} torch "
        f"thread(s) (A B B A ..., {sbs['reps']} per side and figure). The ratio divides by the reference at its faster "
        "thread count; the range is over reps, each pex-jax window against the faster reference window next to it. "
        "pex-jax's env step is the engine's (pack, one upload, insert, update + act, one download).",
        "",
        "| figure | pex-jax (best / median) | "
        + " | ".join(f"reference, {t} thread{'s' if t > 1 else ''}" for t in threads)
        + " | pex-jax / reference (best / median) | range over reps | GFLOP each "
        "| fraction of ceiling: pex-jax / reference |",
        "|---|---|" + "---|" * len(threads) + "---|---|---|---|",
    ]
    for fig in sbs["figures"]:
        p, r = fig["project"], fig["reference"]
        best = {k: max(v[k] for v in r.values()) for k in ("best", "median")}
        lo, hi = fig["ratio_range"]
        flops = fig.get("flops_per_unit")
        ref_frac = fraction_of_ceiling(best["best"], flops, peak)
        lines.append(
            f"| {fig['label']} | {bm(p)} | " + " | ".join(bm(r[str(t)]) for t in threads)
            + f" | **{p['best'] / best['best']:.2f}x** / {p['median'] / best['median']:.2f}x | {lo:.2f}-{hi:.2f}x "
            f"| {f'{flops / 1e9:.3g}' if flops else '-'} "
            f"| {pct(fraction_of_ceiling(p['best'], flops, peak))} / {pct(ref_frac)} |")
    lines += ["", "Run-time patches to the reference (its files are not edited):", ""]
    lines += [f"- {p}" for p in ref.get("patches", [])] or ["- none"]
    lines += ["- torch.set_num_threads per window, as listed above (the reference's scripts call "
              "torch.set_num_threads(1))", ""]
    return lines


def attach_fractions(result: dict) -> None:
    """Store each rate's fraction of the ceiling next to it in the JSON (the Markdown recomputes them)."""
    peak = (result.get("ceiling") or {}).get("peak_gflops")

    def frac(rates: dict, flops) -> dict | None:
        best = fraction_of_ceiling(rates["best"], flops, peak)
        return None if best is None else {"best": best, "median": fraction_of_ceiling(rates["median"], flops, peak)}

    for r in result.get("offline") or []:
        r["fraction_of_ceiling"] = frac(r["fused_total"], r.get("flops_per_update"))
    d = _device(result)
    if d:
        d["fraction_of_ceiling"] = frac(d["calls_per_s"]["device_call"], d.get("flops_per_call"))
    if result.get("act"):
        result["act"]["fraction_of_ceiling"] = frac(result["act"]["act_per_s"], result["act"].get("flops_per_call"))
    if result.get("multitask"):
        flops = next((r.get("flops_per_update") for r in result.get("offline") or []), None)
        result["multitask"]["fraction_of_ceiling"] = frac(result["multitask"]["multitask_updates_per_s_total"], flops)
    for fig in (result.get("side_by_side") or {}).get("figures", []):
        fig["project"]["fraction_of_ceiling"] = frac(fig["project"], fig.get("flops_per_unit"))
        for r in fig["reference"].values():
            r["fraction_of_ceiling"] = frac(r, fig.get("flops_per_unit"))


def summary_lines(result: dict) -> list[str]:
    """What `make bench` prints at the end: the ceiling and fractions, the engine's speed-ups, the projection."""
    out = []
    c = result.get("ceiling")
    if c:
        peak = c["peak_gflops"]
        others = ", ".join(f"{k} {f(v['best'])}" for k, v in c["matmul"].items() if k != c["peak_from"])
        out.append(f"ceiling: peak {f(peak)} GFLOP/s ({c['peak_from']} matmul; {others}); "
                   + "; ".join(f"{name} {flops / 1e9:.3g} GFLOP -> at most {f(peak * 1e9 / flops)}/s"
                               for name, flops in ceiling_rows(result)))
        parts = [f"offline {r['seeds']} seed{'s' if r['seeds'] > 1 else ''} {pct(r['fraction_of_ceiling']['best'])}"
                 for r in result.get("offline") or [] if r.get("fraction_of_ceiling")]
        d = _device(result)
        if d and d.get("fraction_of_ceiling"):
            parts.append(f"engine step {d['agents']} agents {pct(d['fraction_of_ceiling']['best'])}")
        if (result.get("multitask") or {}).get("fraction_of_ceiling"):
            parts.append(f"multitask {pct(result['multitask']['fraction_of_ceiling']['best'])}")
        if parts:
            out.append("fraction of ceiling (total rate, best window): " + ", ".join(parts))
    engine = result.get("engine")
    if engine:
        cases = list(engine["cases"]) + ([engine["acceptance"]] if engine.get("acceptance") else [])
        out.append("engine, workers on / off (whole online phase, best): " + ", ".join(
            f"{case['label']} {'x'.join(map(str, case['hidden']))} x{speedup(case)['best']:.2f}"
            f"{' (acceptance, target x' + str(case['target']) + ')' if 'target' in case else ''}" for case in cases))
    if result.get("components"):
        p = projection(result["components"])
        out.append(f"projection, {p['suite']['tasks']} tasks x {p['suite']['seeds']} seeds, 16 cores + H100: engine "
                   f"{p['engine']['low']['total_h']:.2f}-{p['engine']['high']['total_h']:.2f} h, today's design "
                   f"{p['today']['low']['total_h']:.1f}-{p['today']['high']['total_h']:.1f} h")
    for fig in (result.get("side_by_side") or {}).get("figures", []):
        lo, hi = fig["ratio_range"]
        out.append(f"side by side: {fig['label']}: pex-jax / reference x{fig['ratio']['best']:.2f} best, "
                   f"x{fig['ratio']['median']:.2f} median, x{lo:.2f}-{hi:.2f} over reps")
    return out


def grid_markdown(g: dict) -> list[str]:
    """The hyperparameter grid's figure (`pex_jax.tools.bench.grid`)."""
    c = g["cadence"]
    lines = [f"## Hyperparameter grid: {g['points']} points in one process vs {g['points']} processes "
             "(measured in this run)", "",
             f"PEX online on local AntMaze {g['task']} from the same initial offline states, {g['seeds']} seeds per "
             f"point, {'x'.join(map(str, g['hidden']))} networks, {c['online_steps']} env steps, evaluation every "
             f"{c['eval_every']} steps; points: inverse temperature {', '.join(f'{v:g}' for v in g['values'])}. One "
             "process with `--config.grid` against one `python -m pex_jax.train` per point, one after another (a W&B "
             "agent's trials). Whole runs include start-up, data loading, compilation and evaluation; the loop rate "
             f"is taken between the engine's log rows at steps {c['warmup']} and {c['online_steps']}.", "",
             "| | one grid process | separate processes | grid / separate |", "|---|---|---|---|",
             f"| wall clock, all {g['points']} points (best) | {-g['grid']['wall_s']['best']:.1f} s | "
             f"{-g['separate']['wall_s']['best']:.1f} s | {g['speedup_wall']:.2f}x faster |",
             f"| training loop, agent-steps/s (best) | {g['grid']['agent_steps_per_s']['best']:.0f} | "
             f"{g['separate']['agent_steps_per_s']['best']:.0f} (one point's) | {g['speedup_loop']:.2f}x |", ""]
    return lines
