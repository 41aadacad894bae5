"""HitPaw's photo prices: coins (credits, about $0.001 each) per image, by the result's megapixels.

Source: HitPaw's public developer documentation, https://github.com/shiyao1122/hitpaw-developer-docs,
``docs/get-started/pricing.md`` ("Image Enhancement Pricing"). A photo is billed once, at submission,
by the **output** size: the input's width and height each times the model's scale.

Tier boundaries: HitPaw prints ranges such as "< 8 MP", "8 - 12 MP", "> 216 MP". Here every tier
includes its lower bound and excludes its upper one (``[8, 12)``), which is the reading "< 8 MP"
asks for: a result of exactly 8,000,000 pixels costs the 8-12 MP price, and one of exactly 216 MP the
"> 216 MP" price. A megapixel is 1,000,000 pixels, and sizes are compared as whole pixel counts, so
no rounding decides a tier. The generative tables end at the generative output limit (34 MP, see
:mod:`.catalog`): a larger result is refused before it is priced.

The Generative Enhance table's first tier prints 80 credits next to $0.05; the credits are taken (the
dollar column of every other row is credits / 1000).

No Airflow here: the client estimates with :func:`estimate_coins`, and the sandbox charges with the same
function, so an estimate and the sandbox's charge cannot drift apart.
"""

from __future__ import annotations

from airflow_provider_hitpaw.contract.catalog import ModelSpec, PriceTable, get_model

_MP = 1_000_000

#: ``(lowest output pixel count of the tier, coins)``, in ascending order; the first starts at 0.
PRICE_TIERS: dict[PriceTable, tuple[tuple[int, int], ...]] = {
    # Face Clear, Face Natural, General Enhance, High Fidelity, Sharp Denoise, Detail Denoise.
    PriceTable.STANDARD: (
        (0, 10), (8 * _MP, 20), (12 * _MP, 30), (24 * _MP, 70), (48 * _MP, 140), (108 * _MP, 240),
        (216 * _MP, 480),
    ),
    PriceTable.GENERATIVE_PORTRAIT: ((0, 20), (8 * _MP, 30), (12 * _MP, 40), (24 * _MP, 60)),
    PriceTable.GENERATIVE_ENHANCE: ((0, 80), (8 * _MP, 60), (12 * _MP, 80), (24 * _MP, 150)),
}


class UnpricedModelError(ValueError):
    """The model is not in the catalog, or is billed otherwise (video, per output second)."""


def coins_for_output(table: PriceTable, output_pixels: int) -> int:
    """The price of a result of ``output_pixels`` pixels in one of the tables.

    :raises UnpricedModelError: for the video table (billed per second, not per image).
    :raises ValueError: for a negative pixel count.
    """
    tiers = PRICE_TIERS.get(table)
    if tiers is None:
        raise UnpricedModelError(f"{table.value} models are billed per output second, not per image")
    if output_pixels < 0:
        raise ValueError(f"a pixel count cannot be negative, got {output_pixels}")
    coins = tiers[0][1]
    for lowest, price in tiers:
        if output_pixels >= lowest:
            coins = price
    return coins


def photo_spec(model_name: str) -> ModelSpec:
    """The spec of a photo model (or alias), for pricing.

    :raises UnpricedModelError: for a name the catalog does not list as a photo model.
    """
    spec = get_model(model_name, video=False)
    if spec is None:
        raise UnpricedModelError(f"no HitPaw price is known for photo model {model_name[:64]!r}")
    return spec


def estimate_coins(model_name: str, width: int, height: int) -> int:
    """The coins HitPaw charges for enhancing a ``width`` x ``height`` photo with ``model_name``.

    The output is ``(width * scale) x (height * scale)``; its pixel count picks the tier. The size is
    not checked against the model's limits here (see ``preflight.check_photo_size``).

    :raises UnpricedModelError: for an unknown or video model.
    :raises ValueError: for a width or height that is not a positive whole number.
    """
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
            raise ValueError(f"width and height must be positive whole numbers, got {width!r} x {height!r}")
    spec = photo_spec(model_name)
    out_width, out_height = spec.output_size(width, height)
    return coins_for_output(spec.pricing, out_width * out_height)


def highest_coins(model_name: str) -> int:
    """The most a photo job of this model can cost: its table's highest tier that its output limit
    allows (for a budget check when the photo's size cannot be read).

    :raises UnpricedModelError: for an unknown or video model.
    """
    spec = photo_spec(model_name)
    tiers = PRICE_TIERS[spec.pricing]
    return max(price for lowest, price in tiers if lowest <= spec.max_output_pixels)
