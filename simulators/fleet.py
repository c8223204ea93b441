"""A fleet of institutions modelled on a Shenzhen-like market: banks, payment firms and fintech
apps under sandbox test, with their systems, component inventories, actors and destinations.

The fleet is a pure function of the seed. Raw actor and destination ids exist only here; what
leaves an institution is their HMAC-SHA256 pseudonym, as the SDK makes it.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from suptech.v1 import telemetry_pb2 as tpb

__all__ = [
    "ComponentSpec",
    "System",
    "Actor",
    "Destination",
    "App",
    "Institution",
    "Fleet",
    "VENDORS",
    "pseudonymise",
    "institution_key",
    "build_fleet",
]


def pseudonymise(key: bytes, raw: str) -> str:
    """Same meaning as ``suptech.sdk.pseudonym.pseudonymise``: HMAC-SHA256 of the raw id, hex."""
    return hmac.new(key, raw.encode("utf-8"), hashlib.sha256).hexdigest()


def institution_key(institution_id: str) -> bytes:
    """The pseudonymisation secret an institution would configure in its SDK."""
    return f"suptech-sim-secret:{institution_id}".encode()


@dataclass(frozen=True)
class ComponentSpec:
    layer: int  # suptech.v1.Layer
    vendor: str
    product: str
    version: str
    controllable: bool


# (vendor, product, version, independently controllable) per layer. Domestic "xinchuang" vendors
# are controllable; a few vendors (clouds, core-banking suites) are shared by much of the market,
# which is exactly the concentration the regulator wants to see.
VENDORS: dict[int, list[tuple[str, str, str, bool]]] = {
    tpb.LAYER_CHIP: [
        ("Intel", "Xeon Gold 6338", "3rd-gen", False),
        ("Hygon", "C86 7285", "2", True),
        ("HiSilicon", "Kunpeng 920", "920", True),
        ("Phytium", "FT-2000+/64", "2", True),
    ],
    tpb.LAYER_SERVER: [
        ("Dell", "PowerEdge R750", "15G", False),
        ("Inspur", "NF5280M6", "M6", True),
        ("Sugon", "I620-G30", "G30", True),
        ("Huawei", "TaiShan 200", "2280", True),
    ],
    tpb.LAYER_OS: [
        ("Red Hat", "RHEL", "8.8", False),
        ("Kylin", "Kylin Server", "V10", True),
        ("UnionTech", "UOS Server", "20", True),
        ("openEuler", "openEuler", "22.03 LTS", True),
    ],
    tpb.LAYER_DATABASE: [
        ("Oracle", "Oracle Database", "19c", False),
        ("IBM", "Db2", "11.5", False),
        ("OceanBase", "OceanBase", "4.2", True),
        ("Huawei", "GaussDB", "505", True),
        ("PingCAP", "TiDB", "7.5", True),
        ("ZTE", "GoldenDB", "6.1", True),
    ],
    tpb.LAYER_MIDDLEWARE: [
        ("IBM", "WebSphere", "9.0", False),
        ("Oracle", "WebLogic", "14c", False),
        ("TongTech", "TongWeb", "7.0", True),
        ("BES", "BES Application Server", "9.5", True),
    ],
    tpb.LAYER_CORE_APPLICATION: [
        ("Temenos", "Transact", "R23", False),
        ("Sunline", "Sunline Core", "6", True),
        ("Yusys", "Yusys Platform", "5", True),
        ("in-house", "in-house", "1", True),
    ],
    tpb.LAYER_CLOUD: [
        ("AWS", "AWS Outposts", "2", False),
        ("Tencent Cloud", "TCE", "3.10", True),
        ("Alibaba Cloud", "Apsara Stack", "3.16", True),
        ("Huawei Cloud", "HCS", "8.3", True),
    ],
}

_LAYERS = list(VENDORS)


@dataclass
class System:
    system_id: str
    institution_id: str
    name: str
    tier: int  # suptech.v1.SystemTier
    components: list[ComponentSpec]
    base_latency_ms: float
    base_error_rate: float
    unpatched_vulns: int
    migration_status: int  # suptech.v1.MigrationStatus
    offset_s: int  # where in each 5-minute interval this system reports
    # An SDK metrics exporter on the system sends MetricsReports and its own heartbeats
    # (switched on by simulators.confounders for a few systems).
    metrics: bool = False

    def vendors(self) -> set[str]:
        return {c.vendor for c in self.components}


@dataclass
class Actor:
    raw_id: str
    pseudonym: str
    institution_id: str
    role: int  # suptech.v1.ActorRole
    rate_per_hour: float  # events per hour at peak activity
    systems: list[str]
    partner_destination: str = ""  # pseudonym, for partner actors


@dataclass
class Destination:
    raw_id: str
    pseudonym: str
    kind: int  # suptech.v1.DestinationKind
    country: str = ""


@dataclass
class App:
    app_id: str
    test_id: str
    institution_id: str
    name: str
    initial_users: int
    daily_growth: float
    user_cap: int
    mean_amount_fen: int
    single_cap_fen: int
    daily_cap_fen: int
    approved_features: list[str]
    start_us: int
    end_us: int
    offset_s: int


@dataclass
class Institution:
    institution_id: str
    kind: str  # large_bank | small_bank | payment
    name: str
    systems: list[System] = field(default_factory=list)
    actors: list[Actor] = field(default_factory=list)
    destinations: dict[str, Destination] = field(default_factory=dict)
    apps: list[App] = field(default_factory=list)
    offset_s: int = 0
    # Local day starts (us) its business calendar makes rest days (holidays on weekdays) and
    # working days (make-up weekend days): office activity follows them.
    rest_days: set[int] = field(default_factory=set)
    work_days: set[int] = field(default_factory=set)


@dataclass
class Fleet:
    institutions: list[Institution]
    # Whether institutions send the context contracts (metrics, maintenance windows, business
    # calendars): switched on by simulators.confounders; the plain fleet sends none of them.
    sends_context: bool = False

    def institution(self, institution_id: str) -> Institution:
        for inst in self.institutions:
            if inst.institution_id == institution_id:
                return inst
        raise KeyError(institution_id)

    def systems(self) -> list[System]:
        return [s for inst in self.institutions for s in inst.systems]

    def apps(self) -> list[App]:
        return [a for inst in self.institutions for a in inst.apps]

    def actors(self) -> list[Actor]:
        return [a for inst in self.institutions for a in inst.actors]

    def vendor_institutions(self) -> dict[str, set[str]]:
        """Vendor -> institutions depending on it (the systemic-concentration view)."""
        out: dict[str, set[str]] = {}
        for s in self.systems():
            for v in s.vendors():
                out.setdefault(v, set()).add(s.institution_id)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "institutions": [
                {
                    "institution_id": inst.institution_id,
                    "kind": inst.kind,
                    "name": inst.name,
                    "systems": [
                        {
                            "system_id": s.system_id,
                            "name": s.name,
                            "tier": tpb.SystemTier.Name(s.tier),
                            "components": [
                                dict(asdict(c), layer=tpb.Layer.Name(c.layer)) for c in s.components
                            ],
                        }
                        for s in inst.systems
                    ],
                    "actors": [
                        {
                            "raw_id": a.raw_id,
                            "pseudonym": a.pseudonym,
                            "role": tpb.ActorRole.Name(a.role),
                            "systems": a.systems,
                        }
                        for a in inst.actors
                    ],
                    "destinations": [
                        dict(asdict(d), kind=tpb.DestinationKind.Name(d.kind))
                        for d in inst.destinations.values()
                    ],
                    "apps": [
                        {"app_id": a.app_id, "test_id": a.test_id, "name": a.name}
                        for a in inst.apps
                    ],
                }
                for inst in self.institutions
            ]
        }


# (suffix, name, tier, base p95 latency ms) per kind of institution.
_SYSTEMS: dict[str, list[tuple[str, str, int, float]]] = {
    "large_bank": [
        ("core", "core banking", tpb.SYSTEM_TIER_CORE, 90.0),
        ("pay", "payments hub", tpb.SYSTEM_TIER_CORE, 70.0),
        ("mbank", "mobile banking", tpb.SYSTEM_TIER_IMPORTANT, 160.0),
        ("crm", "customer relationship", tpb.SYSTEM_TIER_IMPORTANT, 220.0),
        ("dw", "data warehouse", tpb.SYSTEM_TIER_GENERAL, 600.0),
        ("oa", "office automation", tpb.SYSTEM_TIER_GENERAL, 300.0),
    ],
    "small_bank": [
        ("core", "core banking", tpb.SYSTEM_TIER_CORE, 110.0),
        ("mbank", "mobile banking", tpb.SYSTEM_TIER_IMPORTANT, 180.0),
        ("crm", "customer relationship", tpb.SYSTEM_TIER_IMPORTANT, 250.0),
        ("oa", "office automation", tpb.SYSTEM_TIER_GENERAL, 320.0),
    ],
    "payment": [
        ("switch", "payment switch", tpb.SYSTEM_TIER_CORE, 45.0),
        ("merchant", "merchant portal", tpb.SYSTEM_TIER_IMPORTANT, 200.0),
        ("risk", "risk engine", tpb.SYSTEM_TIER_IMPORTANT, 60.0),
        ("oa", "office automation", tpb.SYSTEM_TIER_GENERAL, 300.0),
    ],
}

# employees, admins, services, partners per kind of institution.
_ACTORS = {"large_bank": (28, 4, 5, 3), "small_bank": (10, 2, 2, 1), "payment": (12, 2, 4, 2)}
_RATES = {
    tpb.ACTOR_ROLE_EMPLOYEE: 6.0,
    tpb.ACTOR_ROLE_ADMIN: 3.0,
    tpb.ACTOR_ROLE_SERVICE: 12.0,
    tpb.ACTOR_ROLE_PARTNER: 8.0,
}

_FEATURES = [
    "micro_loan",
    "qr_payment",
    "wealth_advice",
    "credit_scoring",
    "merchant_settlement",
    "digital_rmb_wallet",
    "supply_chain_finance",
    "insurance_referral",
]

_APP_HOSTS = {"large_bank": 3, "small_bank": 1, "payment": 1}


def _pick_component(rng: random.Random, layer: int, controllable_share: float) -> ComponentSpec:
    options = VENDORS[layer]
    domestic = [o for o in options if o[3]]
    foreign = [o for o in options if not o[3]]
    pool = domestic if rng.random() < controllable_share else foreign
    # Market concentration: the first domestic vendor of a layer is the most popular.
    weights = [3.0 if o is pool[0] else 1.0 for o in pool]
    vendor, product, version, ctrl = rng.choices(pool, weights=weights)[0]
    return ComponentSpec(layer, vendor, product, version, ctrl)


def _build_system(
    rng: random.Random, inst: Institution, spec: tuple[str, str, int, float], progress: float
) -> System:
    suffix, name, tier, latency = spec
    # Core systems have migrated further towards controllable stacks than general ones.
    by_tier: dict[int, float] = {tpb.SYSTEM_TIER_CORE: 0.85, tpb.SYSTEM_TIER_IMPORTANT: 0.7}
    share = by_tier.get(tier, 0.55)
    share = min(0.97, share * progress)
    components = []
    for layer in _LAYERS:
        if layer == tpb.LAYER_CORE_APPLICATION and suffix in ("oa", "dw"):
            continue
        components.append(_pick_component(rng, layer, share))
    migration = rng.choice(
        [
            tpb.MIGRATION_STATUS_COMPLETED,
            tpb.MIGRATION_STATUS_IN_PROGRESS,
            tpb.MIGRATION_STATUS_IN_PROGRESS,
            tpb.MIGRATION_STATUS_NOT_STARTED,
        ]
    )
    return System(
        system_id=f"{inst.institution_id}-{suffix}",
        institution_id=inst.institution_id,
        name=name,
        tier=tier,
        components=components,
        base_latency_ms=latency * rng.uniform(0.8, 1.25),
        base_error_rate=rng.uniform(0.0005, 0.003),
        unpatched_vulns=rng.choice([0, 0, 0, 1, 1, 2, 3]),
        migration_status=migration,
        offset_s=rng.randrange(0, 300),
    )


def _build_actors(rng: random.Random, inst: Institution) -> None:
    key = institution_key(inst.institution_id)
    counts = _ACTORS[inst.kind]
    roles = [
        tpb.ACTOR_ROLE_EMPLOYEE,
        tpb.ACTOR_ROLE_ADMIN,
        tpb.ACTOR_ROLE_SERVICE,
        tpb.ACTOR_ROLE_PARTNER,
    ]
    prefixes = {roles[0]: "emp", roles[1]: "adm", roles[2]: "svc", roles[3]: "partner"}
    system_ids = [s.system_id for s in inst.systems]
    business = [s.system_id for s in inst.systems if not s.system_id.endswith(("-oa", "-dw"))]
    for role, n in zip(roles, counts, strict=True):
        for i in range(1, n + 1):
            raw = f"{inst.institution_id}/{prefixes[role]}-{i:03d}"
            if role == tpb.ACTOR_ROLE_SERVICE:
                systems = [rng.choice(business)]
            elif role == tpb.ACTOR_ROLE_PARTNER:
                systems = [rng.choice(business)]
            elif role == tpb.ACTOR_ROLE_ADMIN:
                systems = list(system_ids)
            else:
                systems = rng.sample(system_ids, k=min(len(system_ids), rng.randint(1, 3)))
            actor = Actor(
                raw_id=raw,
                pseudonym=pseudonymise(key, raw),
                institution_id=inst.institution_id,
                role=role,
                rate_per_hour=_RATES[role] * rng.uniform(0.6, 1.5),
                systems=systems,
            )
            if role == tpb.ACTOR_ROLE_PARTNER:
                dest = _destination(inst, f"partner:{inst.institution_id}-p{i}", 2)
                actor.partner_destination = dest.pseudonym
            inst.actors.append(actor)
    # The nightly batch job that copies the day's data to the warehouse: large, off-hours and
    # perfectly normal, so "big and at night" alone must not look like a leak.
    raw = f"{inst.institution_id}/svc-nightly-batch"
    inst.actors.append(
        Actor(
            raw,
            pseudonymise(key, raw),
            inst.institution_id,
            tpb.ACTOR_ROLE_SERVICE,
            0.0,
            [inst.systems[0].system_id],
        )
    )
    _destination(inst, "external:statutory-auditor", tpb.DESTINATION_KIND_EXTERNAL)
    if inst.kind == "payment":
        # Cross-border card-scheme settlement: a normal, small, low-sensitivity flow to Hong Kong.
        _destination(inst, "xborder:hk-settlement", tpb.DESTINATION_KIND_CROSS_BORDER, "HK")


def _destination(inst: Institution, raw: str, kind: int, country: str = "") -> Destination:
    dest = Destination(raw, pseudonymise(institution_key(inst.institution_id), raw), kind, country)
    inst.destinations[raw] = dest
    return dest


def build_fleet(seed: int, start_us: int) -> Fleet:
    """Three large banks, five small banks, four payment firms; 18 sandbox apps among them."""
    rng = random.Random(f"fleet:{seed}")
    layout = [("large_bank", "bank-sz", 3, "Shenzhen {} Bank"), ("small_bank", "bank-sz", 5, "")]
    institutions: list[Institution] = []
    n_bank = 0
    for kind, prefix, count, _ in layout:
        for _i in range(count):
            n_bank += 1
            iid = f"{prefix}-{n_bank:02d}"
            name = ("Large" if kind == "large_bank" else "Rural Commercial") + f" Bank {n_bank}"
            institutions.append(Institution(iid, kind, name))
    for i in range(1, 5):
        institutions.append(Institution(f"pay-{i:02d}", "payment", f"Payment Firm {i}"))

    app_no = 0
    for inst in institutions:
        inst.offset_s = rng.randrange(0, 300)
        progress = rng.uniform(0.85, 1.15)
        for spec in _SYSTEMS[inst.kind]:
            inst.systems.append(_build_system(rng, inst, spec, progress))
        _build_actors(rng, inst)
        for _ in range(_APP_HOSTS[inst.kind]):
            app_no += 1
            inst.apps.append(_build_app(rng, inst, app_no, start_us))
    return Fleet(institutions)


def _build_app(rng: random.Random, inst: Institution, n: int, start_us: int) -> App:
    initial = int(rng.lognormvariate(9.0, 0.8))  # median ~8k users
    growth = rng.uniform(0.005, 0.03)
    mean_amount = int(rng.lognormvariate(9.5, 0.7))  # median ~130 CNY
    features = sorted(rng.sample(_FEATURES, k=rng.randint(2, 4)))
    day_us = 24 * 3600 * 1_000_000
    return App(
        app_id=f"fin-{n:02d}",
        test_id=f"sbx-2026-{n:03d}",
        institution_id=inst.institution_id,
        name=f"{features[0].replace('_', ' ')} pilot {n}",
        initial_users=initial,
        daily_growth=growth,
        user_cap=int(initial * 2.0 / 1000 + 1) * 1000,
        mean_amount_fen=mean_amount,
        single_cap_fen=max(5_000_00, int(mean_amount * 40 / 100_00 + 1) * 100_00),
        # Several times the busiest normal day, so only an incident reaches it.
        daily_cap_fen=int(initial * 2.0 * 0.08 * 0.3 * 14 * mean_amount * 1.6),
        approved_features=features,
        start_us=start_us - rng.randint(30, 120) * day_us,
        end_us=start_us + rng.randint(90, 240) * day_us,
        offset_s=rng.randrange(0, 3600),
    )
