"""Built-in vocabulary of the synthetic payment stream: countries, products, risky words, shops.

Kept apart from the generator so the word lists can be read (and reviewed by analysts)
without the numeric machinery; everything here is fixed data, independent of the seed.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

#: Phrases that mark a risky product title (case-insensitive, whole words). Normal
#: traffic never contains them; ``risky_product`` fraud and verified shops do.
RISKY_KEYWORDS: tuple[str, ...] = (
    "replica",
    "counterfeit",
    "knockoff",
    "bootleg",
    "hair extensions",
    "cannabis",
    "cbd oil",
    "marijuana",
    "vape",
    "nicotine pouches",
    "kratom",
    "magic mushrooms",
    "psilocybin",
    "anabolic steroids",
    "diet pills",
    "fake id",
    "stun gun",
    "pepper spray",
    "brass knuckles",
    "ammunition",
    "fireworks",
    "lock pick set",
    "poppers",
)

#: Shops on the block list: normal traffic never uses them, every event there is fraud.
BLACKLISTED_SHOPS: tuple[str, ...] = (
    "shop_13",
    "shop_99",
    "shop_404",
    "shop_666",
    "shop_1313",
    "shop_4040",
    "shop_7777",
)

#: Legitimate shops that sometimes sell items whose title holds a risky word (label 0).
VERIFIED_SHOPS: tuple[str, ...] = (
    "shop_7",
    "shop_21",
    "shop_42",
    "shop_108",
    "shop_256",
    "shop_512",
)

#: (ISO country, ISO currency, share of cardholders).
COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("US", "USD", 0.30),
    ("GB", "GBP", 0.10),
    ("DE", "EUR", 0.10),
    ("FR", "EUR", 0.08),
    ("NL", "EUR", 0.04),
    ("ES", "EUR", 0.05),
    ("IT", "EUR", 0.05),
    ("PL", "PLN", 0.03),
    ("SE", "SEK", 0.02),
    ("CH", "CHF", 0.02),
    ("CA", "CAD", 0.05),
    ("AU", "AUD", 0.03),
    ("JP", "JPY", 0.03),
    ("BR", "BRL", 0.04),
    ("MX", "MXN", 0.03),
    ("IN", "INR", 0.04),
    ("SG", "SGD", 0.01),
    ("NG", "NGN", 0.01),
    ("TR", "TRY", 0.01),
    ("AE", "AED", 0.01),
)

#: Currencies used by events: every country's currency (deduplicated, first seen order).
CURRENCIES: tuple[str, ...] = tuple(dict.fromkeys(c for _, c, _ in COUNTRIES))

# category: (share of merchants, brands, items, variants)
_CATALOG: dict[str, tuple[float, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "electronics": (
        0.18,
        ("Voltix", "Auralis", "Nordtek", "Pixelon", "Quantra", "Zentro", "Lumina", "Kestrel"),
        (
            "Wireless Earbuds",
            "Bluetooth Speaker",
            "USB-C Charger 65W",
            "Laptop Stand",
            "Mechanical Keyboard",
            "Gaming Mouse",
            "Smartwatch",
            "Power Bank 20000mAh",
            '27" 4K Monitor',
            "HDMI Cable 2m",
            "Webcam 1080p",
            "Noise Cancelling Headphones",
            "Portable SSD 1TB",
            "Phone Case",
            "Screen Protector",
            "Wi-Fi Router",
            "Tablet Sleeve",
            "Action Camera",
        ),
        ("Black", "White", "Pro", "Mini", "Max", "2-Pack", "Gen 2", "Slim", "Silver"),
    ),
    "fashion": (
        0.20,
        ("Alder & Co", "Maison Rivé", "Northpeak", "Urbanthread", "Solenne", "Kitsune Lane"),
        (
            "Cotton T-Shirt",
            "Slim Fit Jeans",
            "Wool Sweater",
            "Rain Jacket",
            "Leather Belt",
            "Running Sneakers",
            "Ankle Boots",
            "Silk Scarf",
            "Baseball Cap",
            "Crossbody Bag",
            "Linen Shirt",
            "Denim Jacket",
            "Winter Gloves",
            "Sunglasses",
            "Canvas Tote",
        ),
        ("Size M", "Size L", "Size 42", "Navy", "Olive", "Beige", "Charcoal", "Unisex"),
    ),
    "home": (
        0.14,
        ("Hearthly", "Casa Nova", "Birchwood", "Kinfolk Home", "Ostara"),
        (
            "Cast Iron Skillet",
            "Chef's Knife 8in",
            "Bamboo Cutting Board",
            "Pepper Grinder",
            "French Press",
            "Duvet Cover Set",
            "Scented Candle",
            "Throw Pillow",
            "LED Desk Lamp",
            "Storage Baskets",
            "Bath Towel Set",
            "Ceramic Planter",
            "Wall Clock",
            "Kettle 1.7L",
            "Crème Brûlée Torch",
        ),
        ("Grey", "Oak", "Set of 2", "Large", "Small", "Terracotta"),
    ),
    "beauty": (
        0.10,
        ("Glowly", "Veloura", "Puremist", "Botanique"),
        (
            "Vitamin C Serum",
            "Hydrating Face Cream",
            "Argan Hair Oil",
            "Hair Dryer",
            "Lipstick",
            "Mascara",
            "Nail Polish Set",
            "Sunscreen SPF 50",
            "Shampoo 500ml",
            "Beard Trimmer",
            "Makeup Brush Set",
            "Perfume 50ml",
            "Body Lotion",
        ),
        ("Rose", "Unscented", "Travel Size", "Sensitive Skin", "Nude"),
    ),
    "sports": (
        0.08,
        ("Stridex", "Peakform", "Tidewell", "Basecamp"),
        (
            "Yoga Mat",
            "Adjustable Dumbbells",
            "Resistance Bands",
            "Cycling Helmet",
            "Running Shorts",
            "Water Bottle 1L",
            "Tennis Racket",
            "Camping Tent 2P",
            "Hiking Backpack 40L",
            "Jump Rope",
            "Foam Roller",
            "Bike Lock",
            "Swim Goggles",
        ),
        ("Blue", "Red", "Kids", "Adult", "Lightweight"),
    ),
    "books_media": (
        0.07,
        ("Inkwell", "Foliant", "Brightpage"),
        (
            "Paperback Novel",
            "Cookbook",
            "Vinyl Record",
            "Board Game",
            "Jigsaw Puzzle 1000pc",
            "Sketchbook A4",
            "Fountain Pen",
            "Notebook Set",
            "Graphic Novel",
            "Language Course",
        ),
        ("Hardcover", "Deluxe Edition", "Signed", "2nd Edition"),
    ),
    "toys": (
        0.06,
        ("Toddle", "Funforge", "Minimo"),
        (
            "Building Blocks Set",
            "Plush Bear",
            "RC Car",
            "Wooden Train Set",
            "Doll House",
            "Puzzle Cube",
            "Kids' Scooter",
            "Art Kit",
        ),
        ("Ages 3+", "Ages 8+", "Rainbow", "Starter"),
    ),
    "grocery": (
        0.10,
        ("Harvest Lane", "Greenfold", "Bonterra"),
        (
            "Organic Coffee Beans 1kg",
            "Green Tea 100 bags",
            "Dark Chocolate",
            "Olive Oil 1L",
            "Müsli 750g",
            "Protein Bars 12-Pack",
            "Sparkling Water 24-Pack",
            "Basmati Rice 5kg",
            "Maple Syrup",
            "Dog Food 10kg",
            "Cat Litter",
        ),
        ("Organic", "Family Pack", "Fair Trade", "Value Pack"),
    ),
    "digital": (
        0.07,
        ("Streamly", "Playverse", "Cloudnest"),
        (
            "Gift Card 25",
            "Gift Card 50",
            "Music Subscription 1 Month",
            "Cloud Storage 1 Year",
            "Game Credits 1000",
            "E-book",
            "Streaming Pass",
            "VPN 1 Year",
            "Mobile Top-Up 20",
        ),
        ("Digital Code", "Instant Delivery", "EU", "US"),
    ),
}

CATEGORIES: tuple[str, ...] = tuple(_CATALOG)
CATEGORY_SHARES: tuple[float, ...] = tuple(v[0] for v in _CATALOG.values())

_RISKY_TEMPLATES: tuple[str, ...] = (
    "{k} {n}",
    "{n} - {k}",
    "Premium {k} {n}!!",
    "({k}) {n}",
    "{k}, {n}, fast shipping",
    "*{k}* {n} deal of the day",
    "New! {k}/{n}",
    "#{k} {n}",
    "{n} [{k}]",
    "Best {k}. Discreet delivery",
    "{k}!!! limited stock",
    '"{k}" {n}',
    "{n}: {k} - wholesale",
    "{k}... {n}",
)
# What each risky keyword is sold with (never another keyword, never glued to it).
_RISKY_CONTEXT: dict[str, tuple[str, ...]] = {
    "replica": ("Submariner Watch", "Designer Handbag", "Retro 1 Sneakers"),
    "counterfeit": ("Designer Sunglasses", "Luxury Perfume 100ml"),
    "knockoff": ("Wireless Earbuds Pro", "Designer Belt"),
    "bootleg": ("Concert DVD", "Vinyl Pressing"),
    "hair extensions": ("Clip-in 20in Blonde", "Human Hair 100g"),
    "cannabis": ("Seeds Feminized", "Grow Kit"),
    "cbd oil": ("10% 30ml", "Full Spectrum Drops"),
    "marijuana": ("Grinder Set", "Seeds 10pcs"),
    "vape": ("Pen Starter Kit", "Juice Mango 60ml", "Disposable 5000 Puffs"),
    "nicotine pouches": ("Mint 20-Pack", "Extra Strong"),
    "kratom": ("Powder 250g", "Capsules 120ct"),
    "magic mushrooms": ("Grow Kit", "Spore Syringe"),
    "psilocybin": ("Microdose Capsules", "Chocolate Bar"),
    "anabolic steroids": ("Cycle Pack", "Injectable 10ml"),
    "diet pills": ("Extreme Fat Burner", "60 Capsules"),
    "fake id": ("Card Any State", "Hologram Template"),
    "stun gun": ("Rechargeable Flashlight", "1000kV"),
    "pepper spray": ("Keychain 50ml", "Police Strength"),
    "brass knuckles": ("Belt Buckle", "Solid Steel"),
    "ammunition": ("9mm 50 Rounds", ".22 LR Box"),
    "fireworks": ("Rocket Assortment", "Cake 100 Shots"),
    "lock pick set": ("Pro 24pc", "with Training Lock"),
    "poppers": ("Amyl 25ml", "Room Odouriser"),
}


def keyword_pattern(keywords: tuple[str, ...] = RISKY_KEYWORDS) -> re.Pattern[str]:
    """A case-insensitive whole-word regex for ``keywords``; shared by the tests and checks."""
    alternatives = "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _case(rng: np.random.Generator, text: str) -> str:
    """``text`` in a random case style: as is, lower, UPPER, Title, or mIxEd."""
    style = int(rng.integers(0, 5))
    if style == 1:
        return text.lower()
    if style == 2:
        return text.upper()
    if style == 3:
        return text.title()
    if style == 4:
        flips = rng.random(len(text)) < 0.5
        return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True))
    return text


@cache
def normal_titles() -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """Normal product titles grouped by category: (titles, start per category, count per category)."""
    rng = np.random.Generator(np.random.PCG64(20260105))
    titles: list[str] = []
    starts: list[int] = []
    counts: list[int] = []
    for _share, brands, items, variants in _CATALOG.values():
        group: dict[str, None] = {}
        for brand in brands:
            for item in items:
                variant = variants[int(rng.integers(0, len(variants)))]
                group[f"{brand} {item}"] = None
                group[f"{brand} {item}, {variant}"] = None
                group[f"{item} ({variant}) by {brand}"] = None
        starts.append(len(titles))
        counts.append(len(group))
        titles.extend(group)
    return tuple(titles), tuple(starts), tuple(counts)


@cache
def risky_titles() -> tuple[str, ...]:
    """Product titles that each hold one risky keyword, with punctuation and case around it."""
    rng = np.random.Generator(np.random.PCG64(20260106))
    out: dict[str, None] = {}
    for keyword in RISKY_KEYWORDS:
        context = _RISKY_CONTEXT[keyword]
        for template in _RISKY_TEMPLATES:
            for _ in range(2):
                noun = context[int(rng.integers(0, len(context)))]
                out[template.format(k=_case(rng, keyword), n=noun)] = None
    return tuple(out)
