"""Seeded, realistic TMS records: what each resource looks like and how it changes.

Everything is drawn from a `random.Random` seeded per resource, so the same seed always yields
the same dataset (ids included) and changing the size of one resource does not reshuffle the
unrelated ones. Records reference each other (an order names a real customer, a bill a real
carrier and manifest) because a warehouse user joins on those ids.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import string
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]

# Seeded timestamps are spread over these three years: all in the past, so a live mutation
# (stamped with the wall clock) always sorts after every seeded record.
START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00.000Z
END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z
_DAY_MS = 86_400_000

# About 3% of records join the previous record's bulk import (same created_at and updated_at),
# which makes ~6% of records tie with a neighbour: clients must page through ties correctly.
BULK_IMPORT_SHARE = 0.03

# Records are generated in dependency order so that references point at existing records.
BUILD_ORDER = ("customers", "partners", "orders", "manifests", "invoices", "bills")

FULL_ID_PREFIX = {
    "customers": "CUST-",
    "orders": "O-",
    "manifests": "M-",
    "partners": "P-",
    "invoices": "INV-",
    "bills": "B-",
}

STATUSES: dict[str, tuple[str, ...]] = {
    "orders": (
        "new",
        "quoted",
        "booked",
        "dispatched",
        "in-transit",
        "delivered",
        "invoiced",
        "cancelled",
    ),
    "customers": ("active", "on-hold", "inactive"),
    "partners": ("active", "pending", "inactive"),
    "manifests": ("planned", "dispatched", "in-transit", "completed", "cancelled"),
    "invoices": ("draft", "sent", "paid", "overdue", "void"),
    "bills": ("draft", "approved", "paid", "disputed", "void"),
}
# Weights of the statuses above for seeded records (a mature TMS is mostly delivered/paid).
_STATUS_WEIGHTS: dict[str, tuple[int, ...]] = {
    "orders": (4, 4, 8, 8, 8, 30, 33, 5),
    "customers": (85, 5, 10),
    "partners": (80, 8, 12),
    "manifests": (8, 8, 8, 70, 6),
    "invoices": (5, 15, 65, 10, 5),
    "bills": (5, 15, 70, 5, 5),
}

_STATUS_CUMULATIVE = {
    name: tuple(itertools.accumulate(weights)) for name, weights in _STATUS_WEIGHTS.items()
}

# (city, state/province, postal prefix, country, lat, lng)
_CITIES = (
    ("Toronto", "ON", "M5V", "CA", 43.6532, -79.3832),
    ("Montréal", "QC", "H2X", "CA", 45.5019, -73.5674),
    ("Québec", "QC", "G1R", "CA", 46.8139, -71.2080),
    ("Mississauga", "ON", "L5T", "CA", 43.5890, -79.6441),
    ("Vancouver", "BC", "V6B", "CA", 49.2827, -123.1207),
    ("Calgary", "AB", "T2P", "CA", 51.0447, -114.0719),
    ("Winnipeg", "MB", "R3C", "CA", 49.8951, -97.1384),
    ("Chicago", "IL", "60607", "US", 41.8781, -87.6298),
    ("Dallas", "TX", "75201", "US", 32.7767, -96.7970),
    ("Laredo", "TX", "78045", "US", 27.5306, -99.4803),
    ("Atlanta", "GA", "30303", "US", 33.7490, -84.3880),
    ("Los Angeles", "CA", "90021", "US", 34.0522, -118.2437),
    ("Newark", "NJ", "07105", "US", 40.7357, -74.1724),
    ("Memphis", "TN", "38118", "US", 35.1495, -90.0490),
    ("Columbus", "OH", "43215", "US", 39.9612, -82.9988),
    ("Denver", "CO", "80216", "US", 39.7392, -104.9903),
    ("Seattle", "WA", "98108", "US", 47.6062, -122.3321),
    ("Detroit", "MI", "48226", "US", 42.3314, -83.0458),
    ("Buffalo", "NY", "14206", "US", 42.8864, -78.8784),
    ("Kansas City", "MO", "64108", "US", 39.0997, -94.5786),
)
_STREETS = (
    "King St W",
    "Rue Sainte-Catherine",
    "Industrial Pkwy",
    "Commerce Dr",
    "Logistics Blvd",
    "Boulevard René-Lévesque",
    "Dock Rd",
    "Warehouse Way",
    "Airport Rd",
    "Chemin du Fleuve",
    "Rail Yard Ave",
    "Harbor St",
)
_NAME_HEADS = (
    "Northern",
    "Maple Leaf",
    "Great Lakes",
    "Prairie",
    "Atlantic",
    "Pacific",
    "Summit",
    "Blue Ridge",
    "Lévesque",
    "Müller",
    "Côté",
    "Golden Gate",
    "Iron Horse",
    "Saint-Laurent",
    "Zürich",
    "Evergreen",
    "Lone Star",
    "Red River",
)
_NAME_TAILS = (
    "Freight",
    "Logistics",
    "Foods",
    "Steel",
    "Distribution",
    "Paper",
    "Supply",
    "Chemicals",
    "Transport",
    "Manufacturing",
    "Agri",
    "Building Products",
)
_NAME_SUFFIXES = ("Inc.", "Ltd.", "LLC", "Corp.", "Co.", "GmbH", "S.E.N.C.", "")
_UNICODE_NAMES = ("中远物流有限公司", "Société Générale de Transport", "Bäckerei Müller & Söhne")
# (display, ascii for email addresses)
_FIRST = (
    ("Amélie", "amelie"),
    ("José", "jose"),
    ("Jürgen", "juergen"),
    ("Wei", "wei"),
    ("Priya", "priya"),
    ("Liam", "liam"),
    ("Chloé", "chloe"),
    ("Zoë", "zoe"),
    ("Mateo", "mateo"),
    ("Fatima", "fatima"),
    ("Olivia", "olivia"),
    ("Björn", "bjorn"),
    ("Hiroshi", "hiroshi"),
    ("Marc-André", "marc-andre"),
)
_LAST = (
    ("Tremblay", "tremblay"),
    ("Gagnon", "gagnon"),
    ("Müller", "mueller"),
    ("Nguyen", "nguyen"),
    ("Smith", "smith"),
    ("García", "garcia"),
    ("Côté", "cote"),
    ("Li", "li"),
    ("Patel", "patel"),
    ("Johnson", "johnson"),
    ("Roy", "roy"),
    ("O'Brien", "obrien"),
)
_COMMODITIES = (
    "Frozen poultry",
    "Steel coils",
    "Paper rolls",
    "Auto parts",
    "Bottled water",
    "Consumer electronics",
    "Lumber",
    "Furniture",
    "Maple syrup",
    "Bagged fertilizer",
    "Café en grains",
    "Machinery parts",
    "Textiles",
    "Plastic resin",
    "瓷器 (porcelain)",
)
_FREIGHT_CLASSES = ("50", "55", "60", "65", "70", "77.5", "85", "92.5", "100", "125", "150", "250")
_SERVICES = ("LTL", "FTL", "Expedited", "Intermodal", "Partial")
_EQUIPMENT = ("dry_van", "reefer", "flatbed", "step_deck", "power_only", "conestoga")
_TAGS = ("hazmat", "expedite", "team", "temp-controlled", "cross-border", "appointment", "fragile")
_NOTES = (
    "Driver must call 1h ahead.",
    "Livraison à l'arrière — sonner à la porte.",
    "易碎品 小心轻放",
    "Dock closes at 15:00; no weekend receiving.",
    "Lumper fee pre-approved up to $150.",
    "Übergabe nur gegen Unterschrift.",
)
_ACCESSORIALS = (
    ("LG", "Liftgate"),
    ("RES", "Residential delivery"),
    ("DET", "Detention"),
    ("INS", "Inside delivery"),
    ("APPT", "Appointment"),
)
_CONTACT_ROLES = ("billing", "dispatch", "owner")
_PAYMENT_TERMS = ("NET15", "NET30", "NET45", "COD")
_INSURERS = ("Intact Insurance", "Northbridge", "Travelers", "Great West Casualty", "Zurich")


# iso_ms runs millions of times while building a large dataset, and time.strftime per call was a
# visible share of the build time: the date and time-of-day parts are cached instead (a few
# thousand distinct days, at most 86,400 distinct seconds of the day).
@functools.cache
def _date_of_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


@functools.cache
def _time_of_day(second: int) -> str:
    minutes, seconds = divmod(second, 60)
    return f"T{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}."


_MILLIS = tuple(f"{millis:03d}Z" for millis in range(1000))


def iso_ms(ms: int) -> str:
    """Rose Rocket's timestamp format: UTC, millisecond precision, `Z` suffix."""
    day, rest = divmod(ms, _DAY_MS)
    second, millis = divmod(rest, 1000)
    return _date_of_day(day) + _time_of_day(second) + _MILLIS[millis]


def _date(ms: int) -> str:
    return _date_of_day(ms // _DAY_MS)


def _uuid(rng: random.Random) -> str:
    # From the seeded RNG rather than uuid.uuid4(), so ids are reproducible; formatted by hand
    # (version 4, RFC 4122 variant) because uuid.UUID() costs several times more.
    n = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def _int(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in [low, high): random.randrange without its (measurable) overhead."""
    return low + int(rng.random() * (high - low))


def _pick(rng: random.Random, items: Sequence[Any]) -> Any:
    return items[int(rng.random() * len(items))]


def _cents(rng: random.Random, low: int, high: int) -> int:
    """An amount in [low, high) dollars, in cents: money is computed in integer cents and
    divided by 100 only when stored, which keeps two decimals exact without round()."""
    return _int(rng, low * 100, high * 100)


def _company(rng: random.Random) -> str:
    if rng.random() < 0.04:
        return str(_pick(rng, _UNICODE_NAMES))
    name = f"{_pick(rng, _NAME_HEADS)} {_pick(rng, _NAME_TAILS)} {_pick(rng, _NAME_SUFFIXES)}"
    return name.rstrip()


def _domain(name: str) -> str:
    ascii_part = "".join(c for c in name.lower() if c.isascii() and c.isalnum())
    return f"{ascii_part[:20] or 'shipper'}.example.com"


def _phone(rng: random.Random) -> str:
    return f"+1-{_int(rng, 200, 999)}-555-{_int(rng, 0, 10000):04d}"


def _address(rng: random.Random) -> Record:
    city, state, postal, country, lat, lng = _pick(rng, _CITIES)
    if country == "CA":
        postal = f"{postal} {_int(rng, 0, 10)}{chr(65 + _int(rng, 0, 26))}{_int(rng, 0, 10)}"
    return {
        "address_1": f"{_int(rng, 1, 9999)} {_pick(rng, _STREETS)}",
        "address_2": None if rng.random() < 0.7 else f"Unit {_int(rng, 1, 400)}",
        "city": city,
        "state": state,
        "postal": postal,
        "country": country,
        "lat": round(lat + (rng.random() - 0.5) * 0.2, 6),
        "lng": round(lng + (rng.random() - 0.5) * 0.2, 6),
    }


def _commodity(rng: random.Random) -> Record:
    pieces = _int(rng, 1, 30)
    return {
        "description": _pick(rng, _COMMODITIES),
        "quantity": pieces,
        "pieces": pieces,
        "weight": round(50 + rng.random() * 19_950, 1),
        "weight_unit": "lb" if rng.random() < 0.7 else "kg",
        "freight_class": _pick(rng, _FREIGHT_CLASSES),
        "is_hazmat": rng.random() < 0.05,
        "dimensions": {
            "length": _int(rng, 24, 53 * 12),
            "width": _int(rng, 24, 102),
            "height": _int(rng, 12, 110),
            "unit": "in",
        },
    }


def _billing(rng: random.Random, currency: str) -> Record:
    linehaul = _cents(rng, 250, 6500)
    amounts = [("LH", "Linehaul", linehaul), ("FSC", "Fuel surcharge", linehaul * 18 // 100)]
    if rng.random() < 0.4:
        code, description = _pick(rng, _ACCESSORIALS)
        amounts.append((code, description, _cents(rng, 50, 400)))
    subtotal = sum(cents for _, _, cents in amounts)
    tax = subtotal * 13 // 100 if currency == "CAD" else 0
    return {
        "currency": currency,
        "subtotal_amount": subtotal / 100,
        "tax_amount": tax / 100,
        "total_amount": (subtotal + tax) / 100,
        "line_items": [
            {"code": code, "description": description, "amount": cents / 100}
            for code, description, cents in amounts
        ],
    }


class Pools:
    """Pre-drawn companies, people, addresses, shipping locations and commodities.

    A TMS sees the same shippers, docks, lanes and products again and again, and drawing from
    these pools instead of inventing every sub-object per record is what keeps building
    hundreds of thousands of records fast. Pool entries are shared between records and must
    never be edited in place (mutation edits decoded copies).
    """

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"{seed}:pools")
        self.companies = tuple(
            (name, _domain(name)) for name in (_company(rng) for _ in range(600))
        )
        self.people = tuple(
            (f"{first} {last}", f"{first_ascii}.{last_ascii}", _phone(rng))
            for (first, first_ascii), (last, last_ascii) in (
                (_pick(rng, _FIRST), _pick(rng, _LAST)) for _ in range(400)
            )
        )
        self.addresses = tuple(_address(rng) for _ in range(1000))
        self.locations = tuple(
            {
                "org_name": _pick(rng, self.companies)[0],
                **_pick(rng, self.addresses),
                "contact_name": _pick(rng, self.people)[0],
                "phone": _phone(rng),
            }
            for _ in range(1000)
        )
        commodities = tuple(_commodity(rng) for _ in range(1000))
        # Whole lists, not just items: one draw per record instead of one per item.
        self.commodity_lists = tuple(
            [_pick(rng, commodities) for _ in range(_int(rng, 1, 5))] for _ in range(2000)
        )
        self.tag_sets = tuple(rng.sample(_TAGS, _int(rng, 0, 4)) for _ in range(256))
        self.equipment_sets = tuple(rng.sample(_EQUIPMENT, _int(rng, 1, 4)) for _ in range(256))
        self.scacs = tuple("".join(rng.choices(string.ascii_uppercase, k=4)) for _ in range(2000))
        # A lane's rates repeat from order to order; 1,500 distinct billings per currency.
        self.billings = {
            currency: tuple(_billing(rng, currency) for _ in range(1500))
            for currency in ("USD", "CAD")
        }

    def person(self, rng: random.Random, domain: str) -> Record:
        name, local, phone = _pick(rng, self.people)
        return {"name": name, "email": f"{local}@{domain}", "phone": phone}

    def stop(self, rng: random.Random, when: int) -> Record:
        window = _int(rng, 1, 5) * 3_600_000
        return {
            **_pick(rng, self.locations),
            "appointment_start_at": iso_ms(when),
            "appointment_end_at": iso_ms(when + window),
        }


@functools.lru_cache(maxsize=4)
def pools_for(seed: int) -> Pools:
    """Pools are read-only, so simulators with the same seed share them (tests start many)."""
    return Pools(seed)


@dataclass
class Refs:
    """Compact references to records already built, for the records that point at them."""

    customers: list[Record] = field(default_factory=list)  # {id, full_id, name}
    partners: list[Record] = field(default_factory=list)  # {id, full_id, name}
    # (id, full_id, customer ref, currency, total in cents, billing line items)
    orders: list[tuple[str, str, Record | None, str, int, list[Record]]] = field(
        default_factory=list
    )
    manifests: list[tuple[str, str, Record | None]] = field(default_factory=list)

    def add(self, resource: str, record: Record) -> None:
        """Remember `record` so that later records can reference it."""
        head = {"id": record["id"], "full_id": record["full_id"]}
        if resource in ("customers", "partners"):
            getattr(self, resource).append({**head, "name": record["name"]})
        elif resource == "orders":
            billing = record["billing"]
            self.orders.append(
                (
                    record["id"],
                    record["full_id"],
                    record["customer"],
                    billing["currency"],
                    round(billing["total_amount"] * 100),
                    billing["line_items"],
                )
            )
        elif resource == "manifests":
            self.manifests.append((record["id"], record["full_id"], record["carrier"]))


@dataclass
class World:
    """What a record builder draws from: the pools and the records built so far."""

    pools: Pools
    refs: Refs


def _ref(rng: random.Random, pool: list[Record]) -> Record | None:
    return dict(pool[int(rng.random() * len(pool))]) if pool else None


def _weighted_status(rng: random.Random, resource: str) -> str:
    cumulative = _STATUS_CUMULATIVE[resource]
    return STATUSES[resource][bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _base(
    rng: random.Random, resource: str, number: int, created: int, updated: int, version: int
) -> Record:
    full_id = f"{FULL_ID_PREFIX[resource]}{number}"
    return {
        "id": _uuid(rng),
        "full_id": full_id,
        "public_id": full_id,
        "status": _weighted_status(rng, resource),
        "created_at": iso_ms(created),
        "updated_at": iso_ms(updated),
        "version": version,
    }


def build_customer(rng: random.Random, world: World, base: Record, created: int) -> Record:
    name, domain = _pick(rng, world.pools.companies)
    contacts = [
        {**world.pools.person(rng, domain), "role": _pick(rng, _CONTACT_ROLES)}
        for _ in range(_int(rng, 1, 4))
    ]
    return {
        **base,
        "external_id": None if rng.random() < 0.6 else f"ERP-{_int(rng, 0, 10**6):06d}",
        "name": name,
        "is_active": base["status"] != "inactive",
        "currency": "CAD" if rng.random() < 0.4 else "USD",
        "credit_limit": None if rng.random() < 0.2 else float(_int(rng, 5, 500) * 1000),
        "payment_terms": _pick(rng, _PAYMENT_TERMS),
        "billing_address": _pick(rng, world.pools.addresses),
        "contacts": contacts,
        "notes": None if rng.random() < 0.8 else _pick(rng, _NOTES),
    }


def build_partner(rng: random.Random, world: World, base: Record, created: int) -> Record:
    name, domain = _pick(rng, world.pools.companies)
    canadian = rng.random() < 0.35
    return {
        **base,
        "name": name,
        "type": "carrier",
        "mc_number": None if canadian else f"MC-{_int(rng, 100000, 999999)}",
        "dot_number": None if canadian and rng.random() < 0.5 else str(_int(rng, 10**6, 10**7)),
        "scac": _pick(rng, world.pools.scacs),
        "insurance": {
            "provider": _pick(rng, _INSURERS),
            "policy_number": f"POL-{_int(rng, 0, 10**7):07d}",
            "cargo_limit": float(_pick(rng, (100_000, 250_000, 500_000))),
            "expires_on": _date(created + _int(rng, 30, 730) * _DAY_MS),
        },
        "contact": world.pools.person(rng, domain),
        "address": _pick(rng, world.pools.addresses),
        "equipment_types": _pick(rng, world.pools.equipment_sets),
    }


def build_order(rng: random.Random, world: World, base: Record, created: int) -> Record:
    pools = world.pools
    pickup = created + _int(rng, 1, 10) * _DAY_MS + _int(rng, 6, 16) * 3_600_000
    delivery = pickup + _int(rng, 1, 6) * _DAY_MS
    references = [
        {"type": kind, "value": f"{kind}-{_int(rng, 0, 10**6):06d}"}
        for kind in ("PO", "BOL", "PRO")[: _int(rng, 1, 4)]
    ]
    return {
        **base,
        "external_id": None if rng.random() < 0.5 else f"SF-{_int(rng, 0, 10**8):08d}",
        "customer": _ref(rng, world.refs.customers),
        "service": _pick(rng, _SERVICES),
        "equipment_type": _pick(rng, _EQUIPMENT),
        "origin": pools.stop(rng, pickup),
        "destination": pools.stop(rng, delivery),
        "billing": _pick(rng, pools.billings["CAD" if rng.random() < 0.4 else "USD"]),
        "commodities": _pick(rng, pools.commodity_lists),
        "reference_numbers": references,
        "tags": _pick(rng, pools.tag_sets),
        "notes": None if rng.random() < 0.6 else _pick(rng, _NOTES),
    }


def build_manifest(rng: random.Random, world: World, base: Record, created: int) -> Record:
    orders = world.refs.orders
    order_ids = [
        orders[int(rng.random() * len(orders))][0] for _ in range(_int(rng, 1, 7) if orders else 0)
    ]
    first_stop = created + _int(rng, 1, 5) * _DAY_MS
    stops = []
    for sequence in range(1, _int(rng, 2, 6) + 1):
        city, state, _postal, country, _lat, _lng = _pick(rng, _CITIES)
        stops.append(
            {
                "sequence": sequence,
                "type": "pickup" if sequence == 1 else _pick(rng, ("pickup", "delivery")),
                "city": city,
                "state": state,
                "country": country,
                "scheduled_at": iso_ms(first_stop + (sequence - 1) * _int(rng, 4, 30) * 3_600_000),
            }
        )
    driver = None
    if rng.random() >= 0.15:
        name, _local, phone = _pick(rng, world.pools.people)
        driver = {"name": name, "phone": phone}
    return {
        **base,
        "carrier": _ref(rng, world.refs.partners),
        "driver": driver,
        "truck_number": f"T-{_int(rng, 1000, 9999)}",
        "trailer_number": None if rng.random() < 0.1 else f"TR-{_int(rng, 10000, 99999)}",
        "order_ids": order_ids,
        "stops": stops,
        "distance": {"value": _int(rng, 50, 3000), "unit": _pick(rng, ("mi", "km"))},
    }


def _lines(items: list[tuple[str, str, int]]) -> list[Record]:
    return [
        {"code": code, "description": description, "amount": cents / 100}
        for code, description, cents in items
    ]


def _invoice_lines(order_lines: list[Record], subtotal: int) -> list[Record]:
    """The order's billing lines, the last one taking the cent that rounding the tax out of
    the total moved; no random draw, so the seeded records stay what they were before invoices
    had lines (issue 14)."""
    items = [
        (line["code"], line["description"], round(line["amount"] * 100)) for line in order_lines
    ]
    if not items:
        return _lines([("LH", "Linehaul", subtotal)])
    code, description, _ = items[-1]
    items[-1] = (code, description, subtotal - sum(cents for _, _, cents in items[:-1]))
    return _lines(items)


def build_invoice(rng: random.Random, world: World, base: Record, created: int) -> Record:
    order_ref: Record | None = None
    customer, currency, total = _ref(rng, world.refs.customers), "USD", _cents(rng, 300, 9000)
    order_lines: list[Record] = []
    if world.refs.orders:
        order_id, order_full_id, customer, currency, total, order_lines = _pick(
            rng, world.refs.orders
        )
        order_ref = {"id": order_id, "full_id": order_full_id}
    tax = total - total * 100 // 113 if currency == "CAD" else 0
    paid = base["status"] == "paid"
    return {
        **base,
        "order": order_ref,
        "customer": customer,
        "currency": currency,
        "subtotal_amount": (total - tax) / 100,
        "tax_amount": tax / 100,
        "total_amount": total / 100,
        "balance_due": 0.0 if paid or base["status"] == "void" else total / 100,
        "issued_at": iso_ms(created),
        "due_on": _date(created + 30 * _DAY_MS),
        "paid_at": iso_ms(created + _int(rng, 1, 60) * _DAY_MS) if paid else None,
        "line_items": _invoice_lines(order_lines, total - tax),
    }


def build_bill(rng: random.Random, world: World, base: Record, created: int) -> Record:
    manifest_ref: Record | None = None
    partner = _ref(rng, world.refs.partners)
    if world.refs.manifests and rng.random() < 0.9:
        manifest_id, manifest_full_id, carrier = _pick(rng, world.refs.manifests)
        manifest_ref = {"id": manifest_id, "full_id": manifest_full_id}
        partner = carrier or partner
    subtotal = _cents(rng, 200, 5000)
    currency = "CAD" if rng.random() < 0.35 else "USD"
    tax = subtotal * 5 // 100 if currency == "CAD" else 0
    linehaul = subtotal * 85 // 100
    paid = base["status"] == "paid"
    # Lines, dates and balance derived without a random draw (issue 14): the seeded records
    # keep the values they had before bills carried them.
    return {
        **base,
        "partner": partner,
        "manifest": manifest_ref,
        "currency": currency,
        "subtotal_amount": subtotal / 100,
        "tax_amount": tax / 100,
        "total_amount": (subtotal + tax) / 100,
        "balance_due": 0.0 if paid or base["status"] == "void" else (subtotal + tax) / 100,
        "issued_at": iso_ms(created),
        "due_on": _date(created + 45 * _DAY_MS),
        "paid_at": iso_ms(created + 40 * _DAY_MS) if paid else None,
        "carrier_invoice_number": f"{_int(rng, 10**5, 10**6)}-{_int(rng, 0, 100)}",
        "line_items": _lines(
            [("LH", "Linehaul", linehaul), ("FSC", "Fuel surcharge", subtotal - linehaul)]
        ),
    }


Builder = Callable[[random.Random, World, Record, int], Record]
BUILDERS: dict[str, Builder] = {
    "customers": build_customer,
    "partners": build_partner,
    "orders": build_order,
    "manifests": build_manifest,
    "invoices": build_invoice,
    "bills": build_bill,
}


def timeline(rng: random.Random, count: int) -> list[tuple[int, int]]:
    """(created_ms, updated_ms) for `count` records, in creation order.

    Most records were touched some days after creation, a third never; bulk imports put
    consecutive records on the very same instant.
    """
    created = sorted(_int(rng, START_MS, END_MS) for _ in range(count))
    result: list[tuple[int, int]] = []
    for at in created:
        if result and rng.random() < BULK_IMPORT_SHARE:
            result.append(result[-1])
            continue
        updated = at
        if rng.random() >= 0.35:
            updated = at + int(rng.expovariate(1 / (7 * _DAY_MS)))
            if updated >= END_MS:
                updated = at + int((END_MS - 1 - at) * rng.random())
        result.append((at, updated))
    return result


class RecordFactory:
    """Builds the seeded records and, later, the records that live mutation creates or edits."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.world = World(pools_for(seed), Refs())

    def initial(self, resource: str, count: int) -> Iterator[tuple[int, int, Record]]:
        """The `count` seeded records of `resource` with their created_at and updated_at in
        epoch ms.

        They come in creation order (full_id 1..count).
        """
        rng = random.Random(f"{self.seed}:{resource}")
        build = BUILDERS[resource]
        for number, (created, updated) in enumerate(timeline(rng, count), start=1):
            version = 1 if updated == created else 2 + int(rng.expovariate(0.5))
            base = _base(rng, resource, number, created, updated, version)
            record = build(rng, self.world, base, created)
            self.world.refs.add(resource, record)
            yield created, updated, record

    def create(self, rng: random.Random, resource: str, number: int, now_ms: int) -> Record:
        """A record created just now (live mutation), with a fresh status."""
        base = _base(rng, resource, number, now_ms, now_ms, 1)
        base["status"] = STATUSES[resource][0]
        record = BUILDERS[resource](rng, self.world, base, now_ms)
        self.world.refs.add(resource, record)
        return record

    @staticmethod
    def touch(rng: random.Random, resource: str, record: Record, now_ms: int) -> None:
        """Edit `record` in place the way a user of the TMS would, stamping it `now_ms`."""
        status = _pick(rng, STATUSES[resource])
        record["status"] = status
        record["updated_at"] = iso_ms(now_ms)
        record["version"] += 1
        if resource == "orders":
            record["notes"] = None if rng.random() < 0.5 else _pick(rng, _NOTES)
            # The freight is revised: an edit changes a nested list too, so syncs must replace
            # a parent's child rows with it (issue 14). Copies: pool lists are shared.
            commodities = record["commodities"]
            if len(commodities) > 1 and rng.random() < 0.5:
                record["commodities"] = commodities[:-1]
            elif commodities:
                record["commodities"] = [*commodities, dict(commodities[0], quantity=1)]
        elif resource == "customers":
            record["is_active"] = status != "inactive"
            record["credit_limit"] = float(_int(rng, 5, 500) * 1000)
        elif resource in ("invoices", "bills"):
            paid = status == "paid"
            record["paid_at"] = iso_ms(now_ms) if paid else None
            record["balance_due"] = 0.0 if paid or status == "void" else record["total_amount"]
        elif resource == "manifests" and record["driver"] is not None:
            record["driver"]["phone"] = _phone(rng)
