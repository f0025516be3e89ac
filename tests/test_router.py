"Router, decisions.csv and the policies recomputed from it (analysis.router, nbs/55_router.ipynb) — the parts that touch files."
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from dyncompress.analysis.dynamic import LevelCosts
from dyncompress.analysis.router import (DECISION_COLUMNS, LevelRouter, dynamic_policies, gap_closed, planted_router_records,
                                         policies_from_decisions, read_decisions, write_decisions)
from dyncompress.eval.records import append_jsonl, read_jsonl

TOKENS = {1: 1000.0, 4: 64.0, 16: 4.0}
COSTS = LevelCosts(TOKENS, llm={1: 2e9, 4: 1.3e8, 16: 8e6}, fixed=3e9, towers=2.5e9)
MODELS = {'big': LevelCosts(TOKENS, llm={1: 4e9, 4: 2.6e8, 16: 1.6e7}, fixed=6e9, towers=5e9)}


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "Records written and read as records.jsonl files, the policies computed, and everything saved."
    d = tmp_path_factory.mktemp('router')
    append_jsonl(d/'report'/'records.jsonl', planted_router_records(100, tokens=TOKENS, seed=2))
    append_jsonl(d/'train'/'records.jsonl', planted_router_records(100, tokens=TOKENS, seed=1, prefix='train/'))
    dp = dynamic_policies(read_jsonl(d/'report'/'records.jsonl'), COSTS, read_jsonl(d/'train'/'records.jsonl'),
                          cost_models=MODELS, n_boot=300)
    return dp, dp.save(d/'out')


def test_decisions_csv_recomputes_the_report(saved):
    dp, paths = saved
    assert paths['decisions'].read_text().splitlines()[0] == ','.join(DECISION_COLUMNS)
    dec = read_decisions(paths['decisions'])
    assert_frame_equal(dec, dp.decisions)
    router = LevelRouter.load(paths['router'])
    pol = policies_from_decisions(dec, COSTS, MODELS, extra_flops={'router': router.flops})
    assert_frame_equal(pol, dp.policies)
    assert_frame_equal(pd.read_csv(paths['policies'], dtype={'param': str}, keep_default_na=False).drop(columns=['lo', 'hi']),
                       dp.policies.drop(columns=['lo', 'hi']), check_exact=False, rtol=1e-12)
    for p in ('cascade', 'router'): assert gap_closed(dec, COSTS, p, n_boot=300) == dp.gaps[p]
    assert set(pol.policy) == {'fixed', 'cascade', 'router', 'oracle'}
    assert (pol[pol.policy == 'router'].accuracy.iloc[0], pol[pol.policy == 'oracle'].accuracy.iloc[0]) == (1.0, 1.0)
    assert dp.gaps['router']['gap'] > 0.95 > dp.gaps['cascade']['gap']


def test_saved_router_routes_the_same(saved):
    dp, paths = saved
    router = LevelRouter.load(paths['router'])
    assert router.to_dict() == dp.router.to_dict()
    r = dp.decisions[dp.decisions.policy == 'router']
    coarse = [x for x in planted_router_records(100, tokens=TOKENS, seed=2) if x['pool_level'] == 16 and x['qid'] in set(r.qid)]
    assert router.route(coarse).reindex(r.qid).tolist() == r.level.tolist()


def test_decisions_files_are_checked(tmp_path, saved):
    dp, _ = saved
    bad = tmp_path/'bad.csv'
    dp.decisions.rename(columns={'level': 'pool_level'}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match='columns'): read_decisions(bad)
    (tmp_path/'r.json').write_text('{"kind": "other"}')
    with pytest.raises(ValueError, match='not a saved LevelRouter'): LevelRouter.load(tmp_path/'r.json')
    wrong = dp.decisions.copy()
    wrong.loc[wrong.policy == 'router', 'levels_tried'] = '16'
    with pytest.raises(ValueError, match='not the last level tried'):
        policies_from_decisions(read_decisions(write_decisions(wrong, tmp_path/'w.csv')), COSTS)
