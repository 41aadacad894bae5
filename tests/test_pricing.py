"""HitPaw's photo prices (contract/pricing.py): the tables, the tier boundaries, and the sandbox
charging exactly the estimate, for every price table, at each boundary, from real image headers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_hitpaw.contract.catalog import PHOTO_MODELS, PriceTable, get_model
from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH
from airflow_provider_hitpaw.contract.pricing import (
    PRICE_TIERS,
    UnpricedModelError,
    coins_for_output,
    estimate_coins,
    highest_coins,
)
from airflow_provider_hitpaw.hooks import sync_transport
from airflow_provider_hitpaw.preflight import read_photo_dimensions
from tests.support.photo_host import PhotoHost, png_header

KEY = "pricing-key"
MP = 1_000_000

# docs/get-started/pricing.md, "Image Enhancement Pricing": (upper bound of the tier in MP, credits).
DOCUMENTED: dict[PriceTable, list[tuple[int | None, int]]] = {
    PriceTable.STANDARD: [(8, 10), (12, 20), (24, 30), (48, 70), (108, 140), (216, 240), (None, 480)],
    PriceTable.GENERATIVE_PORTRAIT: [(8, 20), (12, 30), (24, 40), (34, 60)],
    PriceTable.GENERATIVE_ENHANCE: [(8, 80), (12, 60), (24, 80), (34, 150)],
}


def test_the_tables_are_hitpaws() -> None:
    for table, rows in DOCUMENTED.items():
        lowers = [0] + [(upper or 0) * MP for upper, _ in rows[:-1]]
        assert PRICE_TIERS[table] == tuple(zip(lowers, [coins for _, coins in rows], strict=True))


@pytest.mark.parametrize("table", list(DOCUMENTED))
def test_a_tier_includes_its_lower_bound_and_excludes_its_upper_one(table: PriceTable) -> None:
    rows = DOCUMENTED[table]
    assert coins_for_output(table, 0) == coins_for_output(table, 1) == rows[0][1]
    for (upper, coins), (_, next_coins) in itertools.pairwise(rows):
        assert upper is not None
        assert coins_for_output(table, upper * MP - 1) == coins
        assert coins_for_output(table, upper * MP) == next_coins


def test_estimate_uses_the_output_size() -> None:
    assert estimate_coins("face_2x", 512, 600) == 10  # 1024 x 1200 = 1.2 MP
    assert estimate_coins("general_2x", 2000, 1000) == 20  # 4000 x 2000 = exactly 8 MP
    assert estimate_coins("general_2x", 2000, 999) == 10
    assert estimate_coins("sharpen_denoise_1x", 4000, 2000) == 20  # an alias, 1x
    assert estimate_coins("face_4x", 3000, 4500) == 480  # 12000 x 18000 = 216 MP: "> 216" from 216 on
    assert estimate_coins("generative_portrait_4x", 1000, 1000) == 40  # 16 MP
    assert estimate_coins("generative_enhance_fast_2x", 1000, 1000) == 80  # 4 MP, first tier: 80 credits
    assert estimate_coins("generative_8x", 700, 700) == 150  # 5600 x 5600 = 31.4 MP


@pytest.mark.parametrize("name", ["enhanced_v1", "general_restore_2x", ""])
def test_unknown_and_video_models_have_no_photo_price(name: str) -> None:
    with pytest.raises(UnpricedModelError):
        estimate_coins(name, 100, 100)
    with pytest.raises(UnpricedModelError):
        highest_coins(name)


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (1.5, 10), (True, 10)])
def test_bad_sizes(size: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError, match="positive whole numbers"):
        estimate_coins("face_2x", *size)


def test_highest_price_within_the_output_limit() -> None:
    assert highest_coins("face_4x") == 480
    assert highest_coins("generative_portrait") == 60
    assert highest_coins("generative_2x") == 150
    assert all(highest_coins(m.name) > 0 for m in PHOTO_MODELS)


# -- the sandbox charges the estimate -------------------------------------------------------------


def boundary_cases() -> list[tuple[str, int, int]]:
    """(model, width, height): at and just under every tier boundary of every table, each table
    through a 1x model and a 2x (or 4x) one; the output stays within the model's limits."""
    cases: list[tuple[str, int, int]] = []
    # general_2x: output = 4 x input; boundaries 8, 12, 24, 48, 108, 216 MP of output.
    for w, h in [(2000, 1000), (2000, 1500), (3000, 2000), (4000, 3000), (6000, 4500), (9000, 6000)]:
        cases += [("general_2x", w, h), ("general_2x", w, h - 1)]
    cases += [("face_4x", 3000, 4500), ("face_4x", 3000, 4499)]  # 216 MP through a 4x model
    # 1x standard models: 8, 12, 24, 48 MP (the input limit is 70 MP).
    for w, h in [(4000, 2000), (4000, 3000), (6000, 4000), (8000, 6000)]:
        cases += [("sharpen_denoise", w, h), ("detail_denoise_1x", w, h - 1)]
    # Generative tables: 8, 12, 24 MP, and exactly the 34 MP limit.
    for w, h in [(4000, 2000), (4000, 3000), (6000, 4000), (6800, 5000)]:
        cases += [("generative_portrait", w, h), ("generative_portrait_1x", w, h - 1)]
        cases += [("generative", w, h), ("generative_1x", w, h - 1)]
    for w, h in [(2000, 1000), (2000, 1500), (3000, 2000), (3400, 2500)]:
        cases += [("generative_portrait_2x", w, h), ("generative_2x", w, h - 1)]
        cases += [("generative_enhance_fast_model_2x", w, h), ("generative_enhance_fast_2x", w, h - 1)]
    return cases


@pytest.fixture(scope="module")
def pricing_sandbox() -> Iterator[Any]:
    from airflow_provider_hitpaw.sandbox import start_sandbox

    # max_work_megapixels: the jobs are only charged, never computed (they end in ERROR).
    with start_sandbox(api_keys={KEY: 10**7}, job_seconds=0, max_work_megapixels=0.01) as sb:
        yield sb


def test_the_sandbox_charges_the_estimate_at_every_boundary(pricing_sandbox: Any) -> None:
    cases = boundary_cases()
    with PhotoHost() as host:
        session = sync_transport.new_session()
        seen_tiers: set[tuple[PriceTable, int]] = set()
        for model, w, h in cases:
            path = f"/{w}x{h}.png"
            host.files[path] = png_header(w, h)
            # The client's estimate, from the size its preflight reads.
            size = read_photo_dimensions(session, host.url(path), connect_timeout=5, read_timeout=5)
            assert size == (w, h)
            estimate = estimate_coins(model, *size)
            body = {"model_name": model, "img_url": host.url(path), "extension": ".png"}
            reply = requests.post(pricing_sandbox.url(PHOTO_ENHANCER_PATH), json=body, headers={"Apikey": KEY},
                                  timeout=30)
            assert reply.status_code == 200, (model, w, h, reply.text)
            assert reply.json()["data"]["consume_coins"] == estimate, (model, w, h)
            spec = get_model(model, video=False)
            assert spec is not None
            seen_tiers.add((spec.pricing, estimate))
        session.close()
    # Every tier of every table was met.
    assert seen_tiers == {(table, coins) for table, tiers in PRICE_TIERS.items() for _, coins in tiers}
    charged = sum(pricing_sandbox.stats()["coins_charged_by_key"].values())
    assert charged == sum(estimate_coins(m, w, h) for m, w, h in cases)


def test_over_the_generative_output_limit_is_refused_uncharged(pricing_sandbox: Any) -> None:
    before = sum(pricing_sandbox.stats()["coins_charged_by_key"].values())
    with PhotoHost(files={"/big.png": png_header(6800, 5001)}) as host:
        body = {"model_name": "generative", "img_url": host.url("/big.png"), "extension": ".png"}
        reply = requests.post(pricing_sandbox.url(PHOTO_ENHANCER_PATH), json=body, headers={"Apikey": KEY},
                              timeout=30)
    assert reply.status_code == 400 and reply.json()["error_code"] == 110400010
    assert sum(pricing_sandbox.stats()["coins_charged_by_key"].values()) == before


def test_a_flat_price_overrides_the_table() -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox

    with start_sandbox(api_keys={KEY: 1000}, job_seconds=0, prices={"general_2x": 7}, max_work_megapixels=0.01) as sb, \
            PhotoHost(files={"/p.png": png_header(3000, 2000)}) as host:
        for model, coins in [("general_2x", 7), ("general_4x", estimate_coins("general_4x", 3000, 2000))]:
            body = {"model_name": model, "img_url": host.url("/p.png"), "extension": ".png"}
            reply = requests.post(sb.url(PHOTO_ENHANCER_PATH), json=body, headers={"Apikey": KEY}, timeout=30)
            assert reply.json()["data"]["consume_coins"] == coins
