"""Operation parameters (the contract's `parameters` object), validated into typed settings.

The API validates the same shapes with pydantic; this module is what the engine itself trusts,
so the CLI and the flows get the same clear `InvalidParameter` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.errors import InvalidParameter
from analysis.eventlog_time import check_timestamp_format, check_timezone

ANALYSIS_TYPES = ("quick", "standard", "comprehensive")
OPTIMIZATIONS = ("high_accuracy", "high_throughput")
EXPORT_FORMATS = ("PDF", "CSV", "JSON")
REPORT_FORMATS = ("PDF", "PowerPoint")
REPORT_LANGUAGES = ("en", "ja")
# accepted spellings of `parameters.algorithm` -> the miner that runs
ALGORITHM_ALIASES = {
    "inductive": "inductive",
    "inductive_miner": "inductive",
    "inductive_miner_infrequent": "inductive",
    "im": "inductive",
    "imf": "inductive",
    "alpha": "alpha",
    "alpha_miner": "alpha",
    "alpha_miner_enhanced": "alpha_plus",
    "alpha_plus": "alpha_plus",
    "alpha+": "alpha_plus",
    "heuristics": "heuristics",
    "heuristic": "heuristics",
    "heuristics_miner": "heuristics",
    "heuristic_miner": "heuristics",
}


def normalise_algorithm(algorithm: str) -> str:
    key = str(algorithm).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in ALGORITHM_ALIASES:
        allowed = ", ".join(sorted(ALGORITHM_ALIASES))
        raise InvalidParameter(
            f"Unknown discovery algorithm {algorithm!r}; allowed values: {allowed}",
            field="parameters.algorithm",
        )
    return ALGORITHM_ALIASES[key]


def _get(
    obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any
) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if kind is bool and not isinstance(value, bool):
        raise InvalidParameter(f"{where} must be true or false", field=where)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidParameter(f"{where} must be a {expected}", field=where)
    return value


def _section(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"{where} must be an object", field=where)
    return value


def _choice(value: str | None, allowed: tuple[str, ...], where: str) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidParameter(
            f"{where} must be one of {', '.join(allowed)} (got {value!r})", field=where
        )
    return value


def _formats(
    value: Any, allowed: tuple[str, ...], where: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"{where} must be a list of strings", field=where)
    for v in value:
        _choice(v, allowed, where)
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class AnalysisParams:
    """ProcessMiningAnalysis settings after defaults; `analysisType` decides what runs.

    quick: discovery on the DFG (fitness and precision measured too), patterns, no ML models;
    standard: discovery + conformance, anomaly detection, patterns;
    comprehensive: everything, including cycle-time and next-activity prediction.
    """

    analysis_type: str = "standard"
    time_window: tuple[str | None, str | None] | None = None
    algorithm: str = "inductive"
    optimization: str | None = None
    use_advanced_ml: bool = True
    anomaly_detection: bool = True
    variant_analysis: bool = True
    bottleneck_detection: bool = True
    recommendations: bool = True
    generate_reports: bool = True
    create_visualizations: bool = True
    export_formats: tuple[str, ...] = EXPORT_FORMATS
    random_state: int = 0
    timestamp_format: str | None = None
    timezone: str | None = None
    remove_duplicates: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    report_language: str = "en"

    @property
    def runs_conformance(self) -> bool:
        return self.analysis_type != "quick"

    @property
    def runs_anomalies(self) -> bool:
        return self.analysis_type != "quick" and self.anomaly_detection

    @property
    def runs_predictions(self) -> bool:
        return self.analysis_type == "comprehensive" and self.use_advanced_ml

    @property
    def discovery_optimization(self) -> str | None:
        return "high_throughput" if self.analysis_type == "quick" else self.optimization


def parse_analysis_params(params: Mapping[str, Any] | None) -> AnalysisParams:
    p = params or {}
    if not isinstance(p, Mapping):
        raise InvalidParameter("parameters must be an object", field="parameters")
    analysis_type = _choice(
        _get(p, "analysisType", str, "parameters.analysisType", "standard"),
        ANALYSIS_TYPES,
        "parameters.analysisType",
    )
    window = None
    if p.get("timeWindow") is not None:
        tw = _section(p, "timeWindow", "parameters.timeWindow")
        window = (
            _get(tw, "startDate", str, "parameters.timeWindow.startDate", None),
            _get(tw, "endDate", str, "parameters.timeWindow.endDate", None),
        )
    algo = _section(p, "algorithmSettings", "parameters.algorithmSettings")
    out = _section(p, "outputOptions", "parameters.outputOptions")
    where = "parameters.algorithmSettings.performanceOptimization"
    optimization = _choice(
        _get(algo, "performanceOptimization", str, where, None), OPTIMIZATIONS, where
    )
    # the batch example puts `enableML` at the top level; it means the same as useAdvancedML
    use_ml = _get(p, "enableML", bool, "parameters.enableML", True) and _get(
        algo, "useAdvancedML", bool, "parameters.algorithmSettings.useAdvancedML", True
    )
    return AnalysisParams(
        analysis_type=analysis_type or "standard",
        time_window=window,
        algorithm=normalise_algorithm(
            _get(p, "algorithm", str, "parameters.algorithm", "inductive")
        ),
        optimization=optimization,
        use_advanced_ml=use_ml,
        anomaly_detection=_get(
            algo,
            "enableAnomalyDetection",
            bool,
            "parameters.algorithmSettings.enableAnomalyDetection",
            True,
        ),
        variant_analysis=_get(
            p, "enableVariantAnalysis", bool, "parameters.enableVariantAnalysis", True
        ),
        bottleneck_detection=_get(
            p, "enableBottleneckDetection", bool, "parameters.enableBottleneckDetection", True
        ),
        recommendations=_get(
            p,
            "generateOptimizationRecommendations",
            bool,
            "parameters.generateOptimizationRecommendations",
            True,
        ),
        generate_reports=_get(
            out, "generateReports", bool, "parameters.outputOptions.generateReports", True
        ),
        create_visualizations=_get(
            out, "createVisualizations", bool, "parameters.outputOptions.createVisualizations", True
        ),
        export_formats=_formats(
            out.get("exportFormats"),
            EXPORT_FORMATS,
            "parameters.outputOptions.exportFormats",
            EXPORT_FORMATS,
        ),
        random_state=_get(p, "randomState", int, "parameters.randomState", 0),
        timestamp_format=_timestamp_format(p),
        timezone=_timezone(p),
        remove_duplicates=_get(p, "removeDuplicates", bool, "parameters.removeDuplicates", False),
        raw=dict(p),
        report_language=_report_language(p),
    )


def _timestamp_format(p: Mapping[str, Any]) -> str | None:
    """`timestampFormat`: how to read the timestamp text (strftime); None = from the values."""
    where = "parameters.timestampFormat"
    return check_timestamp_format(_get(p, "timestampFormat", str, where, None), where)


def _timezone(p: Mapping[str, Any]) -> str | None:
    """`timezone`: IANA zone of timestamps without an offset; None = the dataset's (or UTC)."""
    where = "parameters.timezone"
    value = _get(p, "timezone", str, where, None)
    return None if value is None or not value.strip() else check_timezone(value, where)


@dataclass(frozen=True)
class EnrichmentParams:
    cleaning_rules: tuple[str, ...] = ("remove_duplicates", "fix_timestamps", "validate_activities")
    output_format: str = "processed_csv"
    timestamp_format: str | None = None
    timezone: str | None = None


def parse_enrichment_params(params: Mapping[str, Any] | None) -> EnrichmentParams:
    p = params or {}
    rules = p.get("cleaningRules")
    if rules is not None and (
        not isinstance(rules, list) or not all(isinstance(r, str) for r in rules) or not rules
    ):
        raise InvalidParameter(
            "parameters.cleaningRules must be a non-empty list of rule names",
            field="parameters.cleaningRules",
        )
    from analysis.enrichment import OUTPUT_FORMATS, RULES

    for rule in rules or ():
        _choice(rule, RULES, "parameters.cleaningRules")
    output_format = _choice(
        _get(p, "outputFormat", str, "parameters.outputFormat", "processed_csv"),
        OUTPUT_FORMATS,
        "parameters.outputFormat",
    )
    return EnrichmentParams(
        cleaning_rules=tuple(rules) if rules else EnrichmentParams.cleaning_rules,
        output_format=output_format or "processed_csv",
        timestamp_format=_timestamp_format(p),
        timezone=_timezone(p),
    )


@dataclass(frozen=True)
class ReportParams:
    report_type: str = "executive_summary"
    include_visualizations: bool = True
    export_formats: tuple[str, ...] = REPORT_FORMATS
    report_language: str = "en"


def _report_language(p: Mapping[str, Any]) -> str:
    """`parameters.reportLanguage`: the language of the PDF and PowerPoint texts."""
    where = "parameters.reportLanguage"
    return _choice(_get(p, "reportLanguage", str, where, "en"), REPORT_LANGUAGES, where) or "en"


REPORT_TYPES = ("executive_summary",)


def parse_report_params(params: Mapping[str, Any] | None) -> ReportParams:
    p = params or {}
    return ReportParams(
        report_type=_choice(
            _get(p, "reportType", str, "parameters.reportType", "executive_summary"),
            REPORT_TYPES,
            "parameters.reportType",
        )
        or "executive_summary",
        include_visualizations=_get(
            p, "includeVisualizations", bool, "parameters.includeVisualizations", True
        ),
        export_formats=_formats(
            p.get("exportFormats"), REPORT_FORMATS, "parameters.exportFormats", REPORT_FORMATS
        ),
        report_language=_report_language(p),
    )
