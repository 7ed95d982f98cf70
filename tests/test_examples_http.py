"""Every example request through the HTTP API gives the advice its story in examples/README.md describes."""

from __future__ import annotations

from typing import Any

import pytest

from service.cards.invariants import response_violations
from tests.conftest import EXAMPLES, example_request

# (request file, [(rule id, indicator), ...] in card order). Reviewed against each patient's story.
EXPECTED: list[tuple[str, list[tuple[str, str]]]] = [
    ("chen-jie-cyp2c19-nm-pci.order-sign", []),
    ("deng-hao-all-tpmt-pm.order-sign", [('thiopurine-tpmt-poor-malignancy', 'warning')]),
    ("emily-clark-nsclc-alk-us.order-sign", [('formulary-prior-authorization', 'info')]),
    ("feng-bo-hypercholesterolaemia-slco1b1-decreased.order-sign", [('simvastatin-slco1b1-decreased-function', 'warning')]),
    ("guo-ming-gout-hla-b5801-positive.order-sign", [('allopurinol-hla-b5801-positive', 'critical')]),
    ("he-jun-trigeminal-neuralgia-hla-b1502-negative.order-sign", []),
    ("he-ping-crc-kras-g12d.order-sign", [('cdx-biomarker-negative', 'warning'), ('formulary-restriction-not-met', 'warning')]),
    ("huang-mei-af-warfarin-untested.order-sign", [('warfarin-iwpc-no-genotype', 'info')]),
    ("li-na-nstemi-untested.order-select", [('clopidogrel-cyp2c19-test-before-acs-pci', 'warning')]),
    ("li-na-nstemi-untested.order-sign", [('clopidogrel-cyp2c19-test-before-acs-pci', 'warning')]),
    ("lin-xiao-epilepsy-hla-b1502-positive.order-sign", [('carbamazepine-oxcarbazepine-hla-b1502-positive', 'critical')]),
    ("liu-yang-nsclc-egfr-untested.order-sign", [('cdx-required-test-missing', 'warning'), ('formulary-restriction-not-met', 'warning')]),
    ("liu-yang-nsclc-egfr-untested.order-sign.stat", [('cdx-required-test-missing', 'warning'), ('formulary-restriction-not-met', 'info')]),
    ("luo-fang-back-pain-cyp2d6-pm.order-sign", [('tramadol-cyp2d6-poor', 'warning')]),
    ("ma-jun-hyperlipidaemia-lipitor.order-sign", [('formulary-not-covered-alternatives', 'warning')]),
    ("ma-li-gout-allopurinol-untested.order-sign", [('allopurinol-hla-b5801-test-recommended', 'info')]),
    ("qian-wei-colon-cancer-dpyd-im.order-sign", [('fluoropyrimidine-dpyd-activity-1', 'warning')]),
    ("robert-miller-warfarin-af.order-select", [('warfarin-iwpc-genotype-guided', 'info')]),
    ("robert-miller-warfarin-af.order-sign", [('warfarin-iwpc-genotype-guided', 'info')]),
    ("song-jia-rectal-cancer-dpyd-untested.order-sign", [('fluoropyrimidine-dpyd-test-before-first-dose', 'warning')]),
    ("sun-hao-epilepsy-hla-untested.order-sign", [('carbamazepine-hla-b1502-test-before-first-dose', 'warning')]),
    ("tang-yu-acute-pain-cyp2d6-um.order-sign", [('codeine-cyp2d6-ultrarapid', 'warning')]),
    ("wang-fang-stroke-cyp2c19-im-prior-tia.order-sign", [('clopidogrel-cyp2c19-acs-pci-intermediate', 'warning')]),
    ("wu-lei-dvt-warfarin-vkorc1-only.order-sign", [('warfarin-iwpc-one-genotype-missing', 'info')]),
    ("wu-xia-gerd-esomeprazole.order-sign", [('formulary-not-covered-alternatives', 'warning')]),
    ("xu-ting-crohn-nudt15-im.order-sign", [('azathioprine-nudt15-intermediate', 'warning')]),
    ("yang-lin-colitis-thiopurine-untested.order-sign", [('thiopurine-test-recommended', 'info')]),
    ("zhang-wei-acs-cyp2c19-pm.order-select", [('clopidogrel-cyp2c19-acs-pci-poor', 'warning')]),
    ("zhang-wei-acs-cyp2c19-pm.order-sign", [('clopidogrel-cyp2c19-acs-pci-poor', 'warning')]),
    ("zhao-min-nsclc-egfr-l858r.order-sign", [('formulary-prior-authorization', 'info')]),
    ("zhao-min-nsclc-egfr-l858r.order-sign.stat", [('formulary-prior-authorization', 'info')]),
    ("zhou-lei-t2dm-glp1-no-metformin.order-sign", [('formulary-restriction-not-met', 'warning')]),
    ("zhou-qiang-valve-warfarin-no-height.order-sign", [('warfarin-iwpc-measurements-missing', 'info')]),
]


def test_every_example_request_is_listed() -> None:
    files = {p.name[:-5] for p in (EXAMPLES / "requests").glob("*.json") if "no-prefetch" not in p.name}
    assert files == {name for name, _ in EXPECTED}


@pytest.mark.parametrize(("name", "expected"), EXPECTED, ids=[name for name, _ in EXPECTED])
def test_example_request_gets_the_expected_cards(client: Any, store: Any, name: str, expected: list[tuple[str, str]]) -> None:
    body = example_request(name)
    r = client.post(f"/cds-services/precision-cds-{body['hook']}", json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    response = r.get_json()
    assert response_violations(response) == []
    fired = store.invocations(limit=1)[0]["rules_fired"]
    assert list(zip(fired, [c["indicator"] for c in response["cards"]])) == expected
