"""The results document's types: one TypedDict per object of its JSON Schema.

The contract between the engine and everything that reads its output, key for
key as ``reports/schema/results.schema.json`` publishes it (a test checks the
two agree): ``NotRequired`` marks a key the schema does not require. The
dataclasses that build a document are :mod:`pytest_memwatch.reports.results`.

This module has no ``from __future__ import annotations`` on purpose: a
TypedDict reads ``NotRequired`` only from evaluated annotations (as strings,
every key would count as required).
"""

from typing import Any, Literal, NotRequired, TypedDict

from pytest_memwatch.base.verdict import VerdictKind, VerdictSource

NotMeasuredReason = Literal[
    "memwatch_skip", "soak_not_run", "marker_error", "not_run", "not_selected"
]
ChangeStatus = Literal["same", "changed", "regressed", "new", "removed"]
ResourceKind = Literal["thread", "fd", "socket", "process", "tempfile", "task"]
# Per-metric differences (``growth``, a run's ``delta``): bytes or counts, None
# where a probe is unavailable.
DeltaDoc = dict[str, int | None]


class SampleDoc(TypedDict):
    """Probe readings (:class:`pytest_memwatch.base.probes.Sample`); other probes may add keys."""

    t: float
    rss: int | None
    malloc: int | None
    blocks: int | None
    gc_objects: int | None
    fds: int | None
    threads: int | None


class RunEntryDoc(TypedDict):
    """One repetition of a repeated test."""

    warmup: bool
    delta: DeltaDoc
    after: SampleDoc
    peak_rss: int | None


class VerdictDoc(TypedDict):
    """:meth:`pytest_memwatch.base.verdict.Verdict.to_dict`.

    Or the verdict the xdist controller writes for a test whose worker crashed
    (kind ``crash``, source ``xdist``), which no check makes.
    """

    kind: VerdictKind | Literal["crash"]
    source: VerdictSource | Literal["xdist"]
    passed: bool
    message: str
    metric: str | None
    limit: float | None
    measured: float | None
    details: dict[str, Any]


class FrameDoc(TypedDict):
    filename: str
    lineno: int
    line: str


class SiteDoc(TypedDict):
    size: int
    count: int
    traceback: list[FrameDoc]


class OriginFrameDoc(TypedDict):
    filename: str
    lineno: int
    function: str
    module: str


class ResourceDoc(TypedDict):
    """A resource left behind (docs/resources.md)."""

    kind: ResourceKind
    name: str
    description: str
    origin: list[OriginFrameDoc]


class AttributionDoc(TypedDict):
    """Where a leak was allocated (:mod:`pytest_memwatch.engine.attribution`)."""

    trace_frames: int
    runs: int
    traced_growth: int
    sites: list[SiteDoc]
    types: list[dict[str, Any]]
    chains: list[dict[str, Any]]
    note: str | None
    mode: NotRequired[Literal["rerun", "in_place", "none"]]
    largest: NotRequired[list[dict[str, Any]]]
    resources: NotRequired[list[ResourceDoc]]


class TrendDoc(TypedDict):
    """A fitted growth rate, bytes per second, with its 95% interval."""

    slope: float
    low: float
    high: float
    n: int
    metric: NotRequired[str]
    intercept: NotRequired[float]


class SoakDoc(TypedDict):
    duration_s: float
    interval_s: float
    warmup_s: float
    samples: list[dict[str, float | None]]
    rate: TrendDoc | None
    limit_rate: float | None
    plateau: bool | None
    complete: bool
    samples_path: NotRequired[str | None]


class TimingDoc(TypedDict):
    """Where memwatch's time on a test went."""

    runs: int
    runs_s: float
    attribution_s: float | None


class ItemDoc(TypedDict):
    """One test (a pytest item) in the document: :meth:`TestResult.to_dict`.

    Not named ``Test...``: pytest would try to collect it from a test module.
    """

    nodeid: str
    outcome: str
    worker: str | None
    duration_s: float
    markers: list[str]
    before: SampleDoc | None
    after: SampleDoc | None
    growth: DeltaDoc
    peak_rss: int | None
    peak_growth: int | None
    runs: list[RunEntryDoc]
    verdicts: list[VerdictDoc]
    attribution: AttributionDoc | None
    soak: SoakDoc | None
    compare_fail: NotRequired[list[str]]
    not_measured: NotRequired[NotMeasuredReason]
    timing: NotRequired[TimingDoc]
    shard: NotRequired[int]


class MachineDoc(TypedDict):
    """:func:`machine_info`: the key baselines are stored under."""

    hostname: str
    system: str
    release: NotRequired[str]
    arch: str
    cpu_count: NotRequired[int | None]
    total_memory: NotRequired[int | None]
    python_implementation: str


class WorkerInfoDoc(TypedDict):
    pid: int | None
    measured: int
    unavailable_probes: dict[str, str]


class RunMetaDoc(TypedDict):
    plugin_version: str
    pytest_version: str
    python: str
    machine: MachineDoc
    commit: str | None
    workers: int
    started_at: str
    finished_at: str | None
    args: list[str]
    settings: dict[str, Any]
    unavailable_probes: dict[str, str]
    worker_info: NotRequired[dict[str, WorkerInfoDoc]]


class WorkerTotalsDoc(TypedDict):
    measured: int
    failed_verdicts: int
    growth_rss: int
    growth: NotRequired[int]


class TotalsDoc(TypedDict):
    tests: int
    measured: int
    failed_verdicts: int
    total_growth_rss: int
    total_growth: NotRequired[int]
    max_peak_rss: int | None
    by_worker: dict[str, WorkerTotalsDoc]


class ShardDoc(TypedDict):
    file: str
    run: RunMetaDoc
    tests: int


class MetricChangeDoc(TypedDict):
    old: int | None
    new: int | None
    delta: int | None


class ChangeDoc(TypedDict):
    nodeid: str
    status: ChangeStatus
    metrics: dict[str, MetricChangeDoc]
    failures: list[str]


class BaselineDoc(TypedDict):
    label: str
    path: str | None
    started_at: str | None
    commit: str | None


class ComparisonDoc(TypedDict):
    baseline: BaselineDoc
    tolerances: list[str]
    regressions: int
    tests: list[ChangeDoc]


class LedgerSessionDoc(TypedDict):
    start: SampleDoc
    end: SampleDoc
    growth: DeltaDoc


class LedgerResourceDoc(ResourceDoc):
    owner: str
    phase: Literal["test", "fixtures"]
    fixtures: list[str]
    worker: str
    shard: NotRequired[int]


class LedgerGrowthDoc(TypedDict):
    nodeid: str
    worker: str
    bytes: int
    shard: NotRequired[int]


class LedgerDoc(TypedDict):
    """What outlived the tests that made it (docs/resources.md)."""

    sessions: dict[str, LedgerSessionDoc | None]
    resources: list[LedgerResourceDoc]
    recorded: int
    released: int
    growth: list[LedgerGrowthDoc]


class ResultsDoc(TypedDict):
    """The whole document, as written to ``--memwatch-json``."""

    schema_version: Literal[1]
    tool: Literal["pytest-memwatch"]
    run: RunMetaDoc
    tests: list[ItemDoc]
    totals: TotalsDoc
    shards: NotRequired[list[ShardDoc]]
    comparison: NotRequired[ComparisonDoc]
    ledger: NotRequired[LedgerDoc]
