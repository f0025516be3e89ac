"Intervals, the calibrated cascade and the demo's claims (issue 10), on hand-made records."
import json, math
import numpy as np
import pandas as pd
import pytest

from dyncompress.eval.scoring import wilson_interval, accuracy_text, accuracy_table
from dyncompress.analysis.tokenaware import token_aware_mask
from dyncompress.testing import write_records
from dyncompress.analysis.dynamic import (matched_levels, calibration_split, calibrated_cascade, choose_threshold,
                                          matched_subset, cascade, fixed_levels, level_costs,
                                          costs_from_model_config, paired_bootstrap, candidate_chains, cascade_curve)
from dyncompress.analysis.report import analyse_run, accuracy_intervals
from dyncompress.analysis.claims import (simulated_records, demo_claims, claim_learning, claim_phenomenon,
                                         claim_token_aware, claim_dynamic, claim_questions, sweep_summary, DEMO_PROFILE)
from dyncompress.config import GEOMETRIES, POOL_LEVELS

KINDS = {'count_crosses': 'detail', 'small_color': 'detail', 'small_shape': 'detail',
         'direction': 'coarse', 'flash_count': 'coarse', 'color_order': 'coarse'}
LEVELS = POOL_LEVELS
TINY_CFG = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=128,
                vocab_size=1000, geometry=GEOMETRIES['tiny'].to_dict(), video_tower=dict(depth=3, embed_dim=48, mlp_ratio=48 / 11),
                image_tower=dict(num_hidden_layers=2, hidden_size=40, intermediate_size=80))


@pytest.fixture(scope='module')
def good():
    "Per-level and multi-level records that meet every claim."
    return simulated_records(KINDS, seed=0), simulated_records(KINDS, seed=1)


@pytest.fixture(scope='module')
def tiny_costs():
    return level_costs(list(LEVELS), **costs_from_model_config(TINY_CFG))


# --- intervals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('k,n,lo,hi', [(81, 263, .2553, .3662), (15, 148, .0624, .1605), (0, 20, 0, .1611),
                                       (1, 29, .0061, .1718)])
def test_wilson_matches_newcombe_1998(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=6e-5) and got[1] == pytest.approx(hi, abs=6e-5)


def test_wilson_closed_form_and_symmetry():
    z2 = 1.959963984540054 ** 2
    for n in (1, 29, 360):
        assert wilson_interval(0, n)[1] == pytest.approx(z2 / (n + z2), rel=1e-12)   # k = 0: upper bound z²/(n + z²)
        for k in (0, n // 3, n):
            lo, hi = wilson_interval(k, n)
            assert wilson_interval(n - k, n) == pytest.approx((1 - hi, 1 - lo), abs=1e-12)


def test_wilson_narrows_with_n_and_contains_p():
    widths = [np.subtract(*wilson_interval(3 * n // 4, n)[::-1]) for n in (4, 40, 400, 4000)]
    assert all(a > b for a, b in zip(widths, widths[1:]))
    for k, n in [(0, 7), (3, 7), (7, 7)]:
        lo, hi = wilson_interval(k, n)
        assert lo <= k / n <= hi
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match='0 <= k <= n'): wilson_interval(-1, 3)


def test_accuracy_table_intervals_match_counts():
    recs = [dict(qid=f"t/{i}", task='t', pool_level=b, correct=i < k, correct_official=i < k, correct_seed=i < k)
            for b, k in ((1, 7), (4, 2)) for i in range(10)]
    t = accuracy_table(recs, intervals=True)
    assert t.loc['t', 'pool 1'] == accuracy_text(7, 10) == '70.0 [39.7, 89.2]'
    assert t.loc['Overall', 'pool 4'] == accuracy_text(2, 10)
    assert accuracy_table(recs).loc['t', 'pool 4'] == 20.0            # the numeric table is unchanged


# --- the calibrated cascade ------------------------------------------------------------------------------------------

def test_split_is_stratified_disjoint_and_seeded(good):
    m = matched_levels(good[1])
    sp = calibration_split(m.correct.index, m.task.tolist(), seed=0)
    per = pd.crosstab(m.task.values, sp.values)
    assert (per['calibration'] == 60).all() and (per['report'] == 60).all()
    assert sp.equals(calibration_split(m.correct.index, m.task.tolist(), seed=0))
    assert (sp != calibration_split(m.correct.index, m.task.tolist(), seed=1)).sum() > 100
    # the split depends on the question ids only, not on the answers
    flipped = good[1].assign(correct=~good[1].correct)
    m2 = matched_levels(flipped)
    assert sp.equals(calibration_split(m2.correct.index, m2.task.tolist(), seed=0))


def test_threshold_ignores_the_report_part(good, tiny_costs):
    "Scrambling the report part's answers and confidences changes nothing about τ, only the reported numbers."
    recs = good[1]
    m = matched_levels(recs)
    cc = calibrated_cascade(m, tiny_costs)
    report = set(cc.split.index[cc.split == 'report'])
    rng = np.random.default_rng(5)
    on_rep = recs.qid.isin(report).to_numpy()
    scrambled = recs.copy()
    scrambled.loc[on_rep, 'correct'] = rng.random(on_rep.sum()) < .5
    scrambled.loc[on_rep, 'confidence'] = rng.random(on_rep.sum())
    cc2 = calibrated_cascade(matched_levels(scrambled), tiny_costs)
    assert cc2.tau == cc.tau and cc2.rule == cc.rule
    assert cc2.cascade.accuracy != cc.cascade.accuracy
    rep_m = matched_subset(m, report)
    assert cc.cascade.accuracy == cascade(rep_m, cc.tau, tiny_costs, cc.chain)['accuracy']
    assert cc.policies[cc.policies.policy == 'fixed'].accuracy.tolist() == fixed_levels(rep_m, tiny_costs).accuracy.tolist()


def test_rule_is_cheapest_within_tolerance(good, tiny_costs):
    m = matched_levels(good[1])
    cal = matched_subset(m, calibration_split(m.correct.index, m.task.tolist()).pipe(lambda s: s.index[s == 'calibration']))
    r = choose_threshold(cal, tiny_costs, tolerance=.01)
    assert r['rule_met'] and r['accuracy'] >= r['reference_accuracy'] - .01
    confs = np.unique(cal.confidence.to_numpy())
    cheaper = [cascade(cal, t, tiny_costs) for t in confs[confs < r['tau']]]
    assert all(c['accuracy'] < r['reference_accuracy'] - .01 or c['visual_tokens'] >= r['visual_tokens'] for c in cheaper)
    rs = choose_threshold(cal, tiny_costs, tolerance=.01, chains='subsets')    # the chain chosen too
    assert rs['rule_met'] and rs['visual_tokens'] <= r['visual_tokens']       # more candidates: never dearer
    for chain in candidate_chains(cal, 'subsets'):
        for c in cascade_curve(cal, None, tiny_costs, chain).itertuples():
            assert c.accuracy < rs['reference_accuracy'] - .01 - 1e-12 or c.visual_tokens >= rs['visual_tokens']


def test_paired_bootstrap():
    a, b = np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(40), np.zeros(60)]
    lo, hi = paired_bootstrap(a, b, seed=0)
    assert lo <= .10 <= hi and lo >= 0                       # a is right wherever b is: the difference is never negative
    with pytest.raises(ValueError, match='equal-length'): paired_bootstrap(a, b[:10])


# --- the claims: all pass on good records, each fails on records made to fail it --------------------------------------

def test_all_claims_pass(good, tiny_costs):
    claims = demo_claims(*good, KINDS, tiny_costs)
    assert [c.passed for c in claims] == [True] * 5, '\n'.join(map(str, claims))
    assert [c.name[0] for c in claims] == list('12345')
    assert '(chance 25%)' in claims[0].line and 'qwen2.5-1.5b projected' in claims[3].line


def test_claim1_fails_below_60(good):
    weak = simulated_records(KINDS, {k: {b: .55 for b in LEVELS} for k in ('detail', 'coarse')}, seed=3)
    assert not claim_learning(good[0], weak).passed
    assert not claim_learning(weak, good[1]).passed
    assert not claim_learning(good[0], None).passed
    assert claim_learning(weak, weak, min_accuracy=.5).passed


def test_claim2_fails_each_way(good):
    fixed, multi = good
    flat_detail = simulated_records(KINDS, {'detail': DEMO_PROFILE['coarse'], 'coarse': DEMO_PROFILE['coarse']})
    sinking_coarse = simulated_records(KINDS, {'detail': DEMO_PROFILE['detail'], 'coarse': {1: .9, 2: .85, 4: .8, 8: .75, 16: .7}})
    low_coarse = simulated_records(KINDS, {'detail': DEMO_PROFILE['detail'], 'coarse': {b: .45 for b in LEVELS}})
    rising_coarse = simulated_records(KINDS, {'detail': DEMO_PROFILE['detail'], 'coarse': {1: .6, 2: .7, 4: .8, 8: .85, 16: .9}},
                                      coupled=False)
    assert claim_phenomenon(fixed, multi, KINDS).passed
    for bad in (flat_detail, sinking_coarse, low_coarse, rising_coarse):
        assert not claim_phenomenon(bad, multi, KINDS).passed
        assert not claim_phenomenon(fixed, bad, KINDS).passed


def test_claim3_fails_on_size_and_on_composition(good):
    c = claim_token_aware(good[0], KINDS)
    m = matched_levels(good[0])
    assert c.passed and c.numbers['subset'] == int(token_aware_mask(m.correct).sum())
    wobbly = simulated_records(KINDS, {'detail': {1: .95, 2: .3, 4: .9, 8: .3, 16: .6}, 'coarse': DEMO_PROFILE['coarse']},
                               coupled=False)
    assert claim_phenomenon(wobbly, good[1], KINDS).passed and not claim_token_aware(wobbly, KINDS).passed
    swapped = {t: 'coarse' if k == 'detail' else 'detail' for t, k in KINDS.items()}
    assert not claim_token_aware(good[0], swapped).passed            # the subset comes from the 'coarse' tasks


def test_claim4_fails_on_accuracy_and_on_tokens(good, tiny_costs):
    assert claim_dynamic(good[1], tiny_costs).passed
    unsure = simulated_records(KINDS, seed=1, confidence=(.6, .6, .1))        # confidence says nothing
    c = claim_dynamic(unsure, tiny_costs)
    assert not c.passed and c.numbers['token_fraction'] > .5
    # a model whose confidence is high exactly when wrong: the rule cannot keep accuracy cheaply either
    liar = simulated_records(KINDS, seed=1, confidence=(.4, .9, .05))
    assert not claim_dynamic(liar, tiny_costs).passed
    assert claim_dynamic(unsure, tiny_costs, max_token_fraction=2.0).passed   # the token bound is what failed


def test_claim5_fails_with_few_questions(good):
    assert claim_questions(*good).passed
    few = simulated_records(KINDS, n_per_task=99)
    c = claim_questions(few, good[1])
    assert not c.passed and '99–99 per task' in c.line


# --- the sweep's summary, from files as the sweep writes them ----------------------------------------------------

def _rows(recs):
    return [dict(qid=r.qid, task=r.task, pool_level=int(r.pool_level), correct=bool(r.correct), confidence=r.confidence,
                 visual_tokens=r.visual_tokens, candidates=['w', 'x', 'y', 'z']) for r in recs.itertuples()]


def test_sweep_summary_writes_claims_and_headline(good, tmp_path):
    fixed, multi = good
    per_level = {b: write_records(_rows(fixed[fixed.pool_level == b]), tmp_path/'eval'/f'pool{b}'/'records.jsonl') for b in LEVELS}
    mpath = write_records(_rows(multi), tmp_path/'eval'/'multi'/'records.jsonl')
    cfg = tmp_path/'model'/'config.json'; cfg.parent.mkdir(); cfg.write_text(json.dumps(TINY_CFG))
    s = sweep_summary(per_level, mpath, tmp_path/'out', dict(model_dir=str(cfg.parent), seeds=[0]))
    assert s['passed'] and s['path'] == tmp_path/'out'/'claims.md' and s['path'].read_text() == s['markdown']
    assert s['markdown'].startswith('## Claims') and s['markdown'].count('**PASS**') == 5
    head = '\n'.join(s['headline'])
    for want in ('per-level models: ', 'at b=1 →', 'detail tasks lose', 'calibrated cascade', 'claims: 5 of 5 pass',
                 str(s['path'])):
        assert want in head, want
    saved = json.loads((tmp_path/'out'/'claims.json').read_text())
    assert [c['passed'] for c in saved['claims']] == [True] * 5 and saved['kinds'] == KINDS
    # a failing run: the per-level models at chance
    chance = simulated_records(KINDS, {k: {b: .25 for b in LEVELS} for k in ('detail', 'coarse')}, seed=7)
    for b, p in per_level.items(): write_records(_rows(chance[chance.pool_level == b]), p)
    s2 = sweep_summary(per_level, mpath, tmp_path/'out2', dict(model_dir=str(cfg.parent)))
    assert not s2['passed'] and '**FAIL** 1 Learning' in s2['markdown'] and 'claims: ' in s2['headline'][-2]


def test_family_report_shows_intervals_and_calibrated_cascade(good, tmp_path):
    mpath = write_records(_rows(good[1]), tmp_path/'multi'/'records.jsonl')
    rep = analyse_run(mpath, tmp_path/'report', dict(model_config=TINY_CFG, seeds=[0]))
    md = rep.read_text()
    ov = accuracy_intervals(good[1], 'pool_level')
    assert f"| {accuracy_text(ov.right[1], ov.n[1])} |" in md                  # overall table
    assert 'By task group' in md and '| detail |' in md                        # synthetic task names → kinds
    assert '## Calibrated cascade' in md and '**360** calibration and **360** report questions' in md
    assert 'FLOPs (qwen2.5-1.5b, projected)' in md and '95% interval' in md
    an = json.loads((rep.parent/'analysis.json').read_text())['calibrated_cascade']
    assert an['n_report'] == 360 and an['rule']['rule_met']
