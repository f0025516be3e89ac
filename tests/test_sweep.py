"""The end-to-end sweep (what `make demo` runs), at smoke size: every step, the report, and a resume that skips."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sweep(out: Path, finetune_steps: int = 2, ok: bool = True):
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "sweep.ipynb"), str(out / "sweep.ipynb"), "--log-output",
           "-p", "experiment", "smoke", "-p", "pool_levels", "4,16", "-p", "pretrain_steps", "1", "-p", "finetune_steps",
           str(finetune_steps), "-p", "multi_steps", str(finetune_steps), "-p", "consistency_steps", str(finetune_steps), "-p", "n_train", "4", "-p", "n_eval", "2", "-p", "n_router", "4",
           "-p", "nbs_dir", str(out / "nbs")]
    env = {**os.environ, "DC_RUNS": str(out / "runs")}        # runs go under $DC_RUNS (default: the repository's runs/)
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, env=env)
    assert (r.returncode == 0) == ok, r.stderr[-3000:]
    return r.stderr + r.stdout


def test_sweep_runs_and_resumes(tmp_path):
    nbs = tmp_path / "nbs"; nbs.mkdir()                      # the sweep runs these copies (its nbs_dir parameter)
    for nb in ("sweep", "pretrain", "finetune", "evaluate"):
        (nbs / f"{nb}.ipynb").write_text((ROOT / "nbs" / f"{nb}.ipynb").read_text())
    log = _sweep(tmp_path)
    exp = tmp_path / "runs" / "smoke"
    report = (exp / "report.md").read_text()
    assert "One model per pool level" in report and "One multi-level model" in report
    assert "## Two multi-level trainings" in report and "The multi-level model trained with the consistency term" in report
    dyn = (exp / "dynamic" / "report.md").read_text()
    assert "## Dynamic policies" in dyn and "router training 24" in dyn, dyn[-3000:]
    decisions = (exp / "dynamic" / "decisions.csv").read_text().splitlines()
    assert decisions[0] == "qid,policy,param,levels_tried,level,correct" and len(decisions) > 1
    assert (exp / "dynamic" / "router.json").exists()
    for sub in ("fixed", "dynamic", "dynamic_consistency"):
        pngs = sorted(p.name for p in (exp / sub).glob("*.png"))
        assert len(pngs) >= 5, pngs
        assert all((exp / sub / p).stat().st_size > 5000 for p in pngs)
    recs = [json.loads(l) for l in (exp / "eval" / "multi" / "records.jsonl").read_text().splitlines()]
    assert {r["pool_level"] for r in recs} == {4, 16} and len(recs) == 6 * 2 * 2
    router = [json.loads(l) for l in (exp / "eval" / "multi_router" / "records.jsonl").read_text().splitlines()]
    assert {r["pool_level"] for r in router} == {4, 16} and len(router) == 6 * 4 * 2
    assert all("/data/router/video/" in r["video"] for r in router)      # the held-out clips, not the evaluation's
    steps = ("pretrain/mm_projector", "pretrain/image_mm_projector", "finetune/pool4", "finetune/pool16", "finetune/multi",
             "finetune/multi_consistency", "eval/pool4", "eval/pool16", "eval/multi", "eval/multi_consistency",
             "eval/multi_router", "eval/multi_consistency_router")
    for step in steps:
        assert (exp / f"{step}.ipynb.done").exists(), step
    assert log.count("run   ") == len(steps)
    again = _sweep(tmp_path)                                  # resume: every finished step is skipped
    assert again.count("skip  ") == len(steps) and "run   " not in again
    other = _sweep(tmp_path, finetune_steps=3, ok=False)      # other settings in the same folder: refused, nothing mixed
    assert 'other settings (consistency_steps: 2 there, 3 now; finetune_steps: 2 there, 3 now; multi_steps: 2 there, 3 now)' in other
