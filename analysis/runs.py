"""The three operation types as phase sequences over the analysis library.

Each `*Run` keeps what earlier phases produced in memory for later ones; `run_all()` is the local
(CLI) path, while the Prefect flows call the phase methods one task each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from analysis import phases
from analysis.caps import (
    DISCOVERY_ACTIVITIES,
    PREDICTION_ACTIVITIES,
    ActivityCap,
    group_rare_activities,
)
from analysis.columns import CASE
from analysis.csvsafe import neutralise
from analysis.dfg import DirectlyFollows
from analysis.eventlog import (
    ColumnMapping,
    LoadResult,
    load_event_log,
    parse_time_window,
    read_event_log,
)
from analysis.forked import Forked
from analysis.params import (
    AnalysisParams,
    EnrichmentParams,
    ReportParams,
    parse_analysis_params,
    parse_enrichment_params,
    parse_report_params,
)
from analysis.pipeline import OperationRun, mean_of
from analysis.progress import Progress

PDF_MAP_EDGES = 50
# the SVG map: at most this many activity nodes and transition edges (the most frequent)
MAP_ACTIVITIES = 40
MAP_EDGES = 120


# discovery + conformance's share of the Process Discovery phase, performance has the rest
DISCOVERY_SHARE = 0.93
# each step's share of the Machine Learning Analysis phase (bpic2012 timings, BENCHMARKS.md)
ML_SHARES = {"anomalies": 0.35, "cycle": 0.3, "next": 0.3, "patterns": 0.05}


def _map_cap_text(drawn: Any) -> str:
    """What part of the graph a capped map shows ("" when it shows all of it)."""
    if not getattr(drawn, "truncated", False):
        return ""
    shown, total = drawn.activities_shown, drawn.activities_total
    acts = f"the {shown:,} most frequent of {total:,}" if shown < total else f"all {total:,}"
    return (
        f"; capped: {acts} activities and the {drawn.edges_shown:,} most frequent of "
        f"{drawn.edges_total:,} transitions are drawn"
    )


def _with_cap(result: Any, cap: ActivityCap | None, field: str = "method") -> Any:
    """`result` (a dataclass) with the cap's statement appended to its method text."""
    text = getattr(result, field, None)
    if cap is None or not isinstance(text, str) or not dataclasses.is_dataclass(result):
        return result
    return dataclasses.replace(result, **{field: f"{text}; {cap.statement()}"})  # type: ignore[type-var]


def discover_capped(
    events: pd.DataFrame,
    dfg: Any,
    algorithm: str,
    optimization: str | None,
    progress: Progress,
) -> Any:
    """The discovery of `events`, with the model mined from at most DISCOVERY_ACTIVITIES
    activities (the rarer ones grouped, said in `algorithm`); every count of the result
    (activities, transitions, variants, unique paths, complexity, the variants patterns read,
    the directly-follows graph of the map) stays that of the whole log."""
    from analysis.dfg import compute_dfg
    from analysis.discovery import complexity_label, discover_process, unique_paths, variant_counts

    mined, cap = group_rare_activities(events, DISCOVERY_ACTIVITIES)
    if cap is None:
        return discover_process(
            events, algorithm=algorithm, optimization=optimization, dfg=dfg, progress=progress
        )
    mined_dfg = compute_dfg(mined)
    fallback = ""
    try:
        result = discover_process(
            mined, algorithm=algorithm, optimization=optimization, dfg=mined_dfg, progress=progress
        )
    except (IndexError, KeyError) as exc:
        if optimization != "high_throughput":
            raise
        # pm4py's IMd can fail on the grouped graph (a sub-graph left without start activity
        # after its noise filter): the default variant-based miner, within its budget, instead
        result = discover_process(
            mined, algorithm=algorithm, optimization=None, dfg=mined_dfg, progress=progress
        )
        fallback = (
            f" (the inductive miner on the directly-follows graph failed on the grouped log: "
            f"{type(exc).__name__}; the default inductive miner on variants was used)"
        )
    variants = variant_counts(events)
    cases = sum(c for _, c in variants)
    activities, edges = len(dfg.activity_counts), len(dfg.edges)
    statement = f"the model is mined and replayed with activities {cap.statement()}{fallback}"
    fitness = result.fitness
    if dataclasses.is_dataclass(fitness) and isinstance(getattr(fitness, "method", None), str):
        fitness = dataclasses.replace(fitness, method=f"{fitness.method}; {statement}")
    return dataclasses.replace(
        result,
        activities=activities,
        transitions=edges,
        variants=len(variants),
        unique_paths=unique_paths(variants),
        complexity=complexity_label(activities, edges, len(variants), cases),
        algorithm=f"{result.algorithm}; {statement}",
        fitness=fitness,
        variant_counts=variants,
        dfg=dfg,
    )


def _load_log(
    source: Path, mapping: ColumnMapping, window: Any, drop_duplicates: bool, progress: Progress
) -> LoadResult:
    """The load phase's reading and validation, as its forked child runs it."""
    return load_event_log(
        source, mapping, window, progress=progress, drop_duplicates=drop_duplicates
    )


def _fit_models(
    events: pd.DataFrame, random_state: int, anomalies: bool, predictions: bool
) -> tuple[Any, Any, Any]:
    """The Machine Learning phase's models (anomalies, cycle time, next activity; None where
    not asked), as the forked child started with the Process Discovery phase fits them."""
    anomaly = _detect_anomalies(events, random_state) if anomalies else None
    cycle = path_pred = None
    if predictions:
        from analysis.prediction import predict_cycle_time, predict_next_activity

        ml_events, cap = group_rare_activities(events, PREDICTION_ACTIVITIES)
        cycle = _with_cap(predict_cycle_time(ml_events, random_state=random_state), cap)
        path_pred = _with_cap(predict_next_activity(ml_events, random_state=random_state), cap)
    return anomaly, cycle, path_pred


def _detect_anomalies(events: pd.DataFrame, random_state: int) -> Any:
    """The anomaly detection, as the Machine Learning phase's forked child runs it."""
    from analysis.anomalies import detect_anomalies

    return detect_anomalies(events, random_state=random_state)


def _prerender_charts(*args: Any) -> dict[str, Any]:
    """The analysis report's charts, as the Report Generation phase's forked child draws them."""
    from analysis.report_pdf import prerender_charts

    return prerender_charts(*args)


def _parts(progress: Progress, shares: dict[str, float]) -> dict[str, Progress]:
    """One Progress per step, each over its share of the phase, so the phase never restarts."""
    whole = sum(shares.values()) or 1.0
    parts, at = {}, 0.0
    for name, share in shares.items():
        parts[name] = progress.part(at, at + share / whole)
        at += share / whole
    return parts


class ProcessMiningRun(OperationRun):
    operation_type = "ProcessMiningAnalysis"
    phase_state: ClassVar[dict[str, tuple[str, ...]]] = {
        phases.LOAD: ("load",),
        phases.DISCOVERY: ("discovery", "perf"),
        phases.MACHINE_LEARNING: ("anomalies", "cycle", "path_pred", "patterns", "models_saved"),
    }
    phase_parameters: ClassVar[dict[str, tuple[str, ...] | None]] = {
        phases.LOAD: ("timeWindow", "timestampFormat", "timezone", "removeDuplicates"),
        phases.DISCOVERY: ("algorithm", "algorithmSettings", "analysisType"),
        # every other key: an unknown one is taken as an input of the models, so it never
        # lets a stale phase be reused
        phases.MACHINE_LEARNING: None,
        phases.REPORTS: (
            "outputOptions",
            "generateReports",
            "createVisualizations",
            "exportFormats",
            "generateOptimizationRecommendations",
            "generateInsights",
            "reportLanguage",
        ),
    }

    def __init__(
        self,
        source: Path,
        out_dir: Path,
        params: dict[str, Any] | None = None,
        mapping: ColumnMapping | None = None,
        **kwargs: Any,
    ) -> None:
        self.params: AnalysisParams = parse_analysis_params(params)
        super().__init__(out_dir, **kwargs)
        self.source = Path(source)
        # the operation's timestampFormat/timezone over the dataset's (stored at upload)
        self.mapping = (mapping or ColumnMapping()).reading(
            self.params.timestamp_format, self.params.timezone
        )
        self.raw_params = dict(params or {})
        self.source_identity = [str(self.source), repr(mapping)]
        self.load: LoadResult | None = None
        self.discovery: Any = None
        self.perf: Any = None
        self.anomalies: Any = None
        self.cycle: Any = None
        self.path_pred: Any = None
        self.patterns: Any = None
        self.recommendations: list[Any] = []
        self.models_saved = 0
        # the scikit-learn models of the Machine Learning phase whose training has ended
        self.models_completed = 0
        # the Machine Learning phase's models, fitted in a forked child started with the
        # Process Discovery phase (the second core), collected by the Machine Learning phase
        self._models: Forked[tuple[Any, Any, Any]] | None = None

    @property
    def models_planned(self) -> int:
        """The scikit-learn models the Machine Learning phase trains (anomalies: 1, predictions:
        cycle time and next activity)."""
        return int(self.params.runs_anomalies) + 2 * int(self.params.runs_predictions)

    def records_to_analyse(self) -> int | None:
        """The records the summary will count as analysed, once the load phase knows them."""
        return len(self.load.events) if self.load is not None else None

    @property
    def events(self) -> pd.DataFrame:
        assert self.load is not None, "load phase has not run"
        return self.load.events

    def run_load(self) -> dict[str, Any]:
        window = None
        if self.params.time_window is not None:
            window = parse_time_window(*self.params.time_window)

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            # the log is read in a forked child (the second core) while this process imports
            # what the later phases need (pm4py, scikit-learn, matplotlib and reportlab: ~2 s)
            with Forked(
                _load_log,
                self.source,
                self.mapping,
                window,
                self.params.remove_duplicates,
                progress=True,
            ) as child:
                child.forward(progress)
                self._import_for_phases()
                self.load = child.result(progress)
            return self.load.records_loaded, self.load.to_dict()

        return self._run_phase(phases.LOAD, work)

    def _import_for_phases(self) -> None:
        """Import the libraries the later phases use (their first import costs ~2 s), so that
        the children forked later inherit them."""
        import analysis.discovery
        import analysis.performance

        p = self.params
        if p.runs_anomalies:
            import analysis.anomalies
        if p.runs_predictions:
            import analysis.prediction
        if p.generate_reports and "PDF" in p.export_formats:
            import analysis.charts
            import analysis.report_pdf  # noqa: F401 - reportlab

    def run_discovery(self) -> dict[str, Any]:
        import analysis.discovery  # noqa: F401 - pm4py's import stays outside the phase's time
        from analysis.dfg import compute_dfg
        from analysis.performance import compute_performance

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            events = self.events
            self._start_models()
            dfg = compute_dfg(events)
            # the performance figures in a forked child (the second core) beside the mining
            with Forked(compute_performance, events, dfg) as perf:
                self.discovery = discover_capped(
                    events,
                    dfg,
                    self.params.algorithm,
                    self.params.discovery_optimization,
                    progress.part(0.0, DISCOVERY_SHARE),
                )
                perf_progress = progress.part(DISCOVERY_SHARE, 1.0)
                perf_progress.update(0, 1, "Measuring performance")
                self.perf = perf.result(perf_progress)
            results = self.discovery.to_dict()
            results["performanceMetrics"] = self.perf.to_dict()
            return len(events), results

        try:
            return self._run_phase(phases.DISCOVERY, work)
        except BaseException:
            self.close()
            raise

    def _start_models(self) -> None:
        """Start fitting the Machine Learning phase's models (anomalies, predictions: they need
        only the events) in a forked child, beside the discovery; the phase collects them (its
        record is charged with the child's CPU and memory) or fits them itself without it."""
        p = self.params
        self.close()
        if p.runs_anomalies or p.runs_predictions:
            child = Forked(
                _fit_models, self.events, p.random_state, p.runs_anomalies, p.runs_predictions
            )
            weakref.finalize(self, child.close)
            self._models = child

    def close(self) -> None:
        child, self._models = self._models, None
        if child is not None:
            child.close()

    def fail_phase(self, phase: str, error: BaseException) -> None:
        self.close()
        super().fail_phase(phase, error)

    def run_machine_learning(self) -> dict[str, Any]:
        from analysis.patterns import find_patterns

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            events, p = self.events, self.params
            results: dict[str, Any] = {}
            # the models come from the child started with the discovery (_start_models), or
            # are fitted here, the anomalies in a forked child while this process trains the
            # predictors: the anomalies' part comes after the predictions' in the progress
            steps = [
                ("cycle", p.runs_predictions),
                ("next", p.runs_predictions),
                ("anomalies", p.runs_anomalies),
                ("patterns", p.variant_analysis),
            ]
            part = _parts(progress, {name: ML_SHARES[name] for name, on in steps if on})
            self.models_completed = 0
            models, self._models = self._models, None
            if models is not None:
                # fitted beside the discovery (_start_models)
                with models:
                    progress.update(0, 1, "Fitting the models (started with the discovery)")
                    self.anomalies, cycle, path_pred = models.result(progress)
                    if p.runs_predictions:
                        self.cycle, self.path_pred = cycle, path_pred
                    self.models_completed = self.models_planned
            else:
                self._fit_here(part)
            if self.anomalies is not None and p.runs_anomalies:
                results["anomalies"] = self.anomalies.to_dict()
            if p.runs_predictions:
                results["predictions"] = {
                    "cycleTimePrediction": self.cycle.to_dict(),
                    "pathPrediction": self.path_pred.to_dict(),
                }
            if p.variant_analysis:
                variants = self.discovery.variant_counts if self.discovery is not None else None
                self.patterns = find_patterns(
                    events, variant_counts=variants, progress=part["patterns"]
                )
                results["patterns"] = self.patterns.to_dict()
            fitted = [r for r in (self.anomalies, self.cycle, self.path_pred) if r is not None]
            if fitted:
                from analysis.prediction import save_models

                path = self.out_dir / "models.pkl"
                self.models_saved = save_models(path, *fitted)
                if self.models_saved:
                    self._artifact(
                        "Predictive Models",
                        "Model",
                        "PKL",
                        path,
                        "Fitted scikit-learn estimators (joblib), feature names, training metadata",
                    )
            results["modelsTrained"] = self.models_saved
            return len(events), results

        try:
            return self._run_phase(phases.MACHINE_LEARNING, work)
        finally:
            self.close()  # restored or failed: the models fitted ahead are not needed

    def _fit_here(self, part: dict[str, Progress]) -> None:
        """The models fitted in this phase: the anomalies in a forked child while this process
        trains the predictors."""
        p = self.params
        with contextlib.ExitStack() as stack:
            child = None
            if p.runs_anomalies:
                child = stack.enter_context(Forked(_detect_anomalies, self.events, p.random_state))
            if p.runs_predictions:
                self._predict(part)
            if child is not None:
                part["anomalies"].update(0, 1, "Detecting anomalies")
                self.anomalies = child.result(part["anomalies"])
                self.models_completed += 1
                part["anomalies"].update(1, 1, "Anomaly detection done")

    def _predict(self, part: dict[str, Progress]) -> None:
        """The cycle-time and next-activity predictions (self.cycle, self.path_pred)."""
        from analysis.prediction import predict_cycle_time, predict_next_activity

        p = self.params
        # the next-activity classifier keeps one probability per class in every tree node: a
        # wide log's rare activities are grouped first (said in `method`)
        ml_events, cap = group_rare_activities(self.events, PREDICTION_ACTIVITIES)
        self.cycle = _with_cap(
            predict_cycle_time(ml_events, random_state=p.random_state, progress=part["cycle"]),
            cap,
        )
        self.models_completed += 1
        self.path_pred = _with_cap(
            predict_next_activity(ml_events, random_state=p.random_state, progress=part["next"]),
            cap,
        )
        self.models_completed += 1

    def _write_svg_map(self, dfg: DirectlyFollows) -> None:
        """The results' zoomable process map (capped on wide logs, said in its description)."""
        from analysis.process_map import render_process_map

        svg = self.out_dir / "process-map.svg"
        drawn = render_process_map(
            dfg, svg, max_activities=MAP_ACTIVITIES, max_edges=MAP_EDGES, title=self.name
        )
        self._artifact(
            "Process Model Visualization",
            "Visualization",
            "SVG",
            svg,
            "Process map (directly-follows graph) with frequencies and mean waiting times"
            + _map_cap_text(drawn),
        )

    def _write_anomalies_csv(self) -> None:
        """anomalies.csv, formula cells neutralised (analysis.csvsafe)."""
        assert self.anomalies is not None
        csv = self.out_dir / "anomalies.csv"
        neutralise(self.anomalies.cases).to_csv(csv, index=False)  # csvsafe
        self._artifact(
            "Anomaly Detection Results",
            "Dataset",
            "CSV",
            csv,
            "Anomalous cases with score, severity and reasons",
        )

    def _start_charts(
        self, stack: contextlib.ExitStack, work_dir: Path
    ) -> Forked[dict[str, Any]] | None:
        """The PDF's charts (matplotlib) drawn in a forked child (the second core) while this
        process derives the recommendations and writes the other files; None without a PDF."""
        p = self.params
        dfg = self.discovery.dfg if self.discovery is not None else None
        if not (p.generate_reports and "PDF" in p.export_formats and dfg is not None):
            return None
        doc, lang = self.partial_document(), p.report_language
        child = Forked(_prerender_charts, doc, self.events, dfg, work_dir, lang)
        return stack.enter_context(child)

    def run_reports(self) -> dict[str, Any]:
        from analysis.process_map import render_process_map
        from analysis.recommendations import recommend

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            with (
                tempfile.TemporaryDirectory(prefix="pmops-report-") as tmp,
                contextlib.ExitStack() as stack,
            ):
                # forked before the map thread starts
                charts = self._start_charts(stack, Path(tmp))
                pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="pmops-map"))
                return reports(progress, Path(tmp), pool, charts)

        def reports(
            progress: Progress,
            work_dir: Path,
            pool: ThreadPoolExecutor,
            charts: Forked[dict[str, Any]] | None,
        ) -> tuple[int, dict[str, Any]]:
            p, events = self.params, self.events
            dfg = self.discovery.dfg if self.discovery is not None else None
            total = 4
            wants_pdf = p.generate_reports and "PDF" in p.export_formats and dfg is not None
            pdf_map: Future[Any] | None = None
            if wants_pdf and p.create_visualizations and dfg is not None:
                # the PDF's map (a printed page holds fewer arrows than a zoomable SVG) is laid
                # out by `dot` subprocesses in a thread while this one goes on (overlap only:
                # the same files as drawing it just before the PDF)
                pdf_map = pool.submit(
                    render_process_map,
                    dfg,
                    work_dir / "map.svg",
                    work_dir / "process-map.png",
                    max_edges=PDF_MAP_EDGES,
                    title=self.name,
                )
            progress.update(0, total, "Deriving recommendations")
            if p.recommendations:
                self.recommendations = recommend(events, self.partial_document())
            if p.create_visualizations and dfg is not None:
                progress.update(1, total, "Drawing the process map")
                self._write_svg_map(dfg)
            if self.anomalies is not None and "CSV" in p.export_formats:
                progress.update(2, total, "Writing the anomalies table")
                self._write_anomalies_csv()
            reports = 0
            if wants_pdf and dfg is not None:
                progress.update(3, total, "Writing the PDF report")
                pdf = self.out_dir / "report.pdf"
                anomalies = self.anomalies.cases if self.anomalies is not None else None
                png = None
                if pdf_map is not None:
                    png = pdf_map.result().png_path
                with progress.heartbeat(3, total, "Writing the PDF report"):
                    from analysis.report_pdf import write_analysis_report

                    doc = self.partial_document()
                    drawn = charts.result(progress) if charts is not None else None
                    write_analysis_report(
                        pdf, doc, events, dfg, png, anomalies, work_dir, p.report_language, drawn
                    )
                self._artifact(
                    "Process Mining Analysis Report",
                    "Report",
                    "PDF",
                    pdf,
                    "Analysis report with process map, charts, anomalies and recommendations",
                )
                reports += 1
            return len(events), {
                "reportsCreated": reports,
                "artifactsCreated": len(self.artifacts),
                "recommendations": len(self.recommendations),
            }

        return self._run_phase(phases.REPORTS, work)

    def summary(self) -> dict[str, Any]:
        load = self.load
        fitness = self.discovery.fitness.log_fitness if self.discovery is not None else None
        confidences = [
            fitness,
            # held-out figures of the predictor used (analysis.prediction)
            getattr(self.cycle, "accuracy", None),
            getattr(self.path_pred, "accuracy", None),
            (1 - self.anomalies.false_positive_rate)
            if self.anomalies is not None and self.anomalies.false_positive_rate is not None
            else None,
            load.data_quality_score / 100 if load is not None else None,
        ]
        overall = mean_of([c for c in confidences if c is not None])
        reports = sum(1 for a in self.artifacts if a.type == "Report")
        return {
            "recordsAnalyzed": len(load.events) if load is not None else 0,
            "processVariants": self.discovery.variants if self.discovery is not None else None,
            "anomaliesDetected": self.anomalies.detected if self.anomalies is not None else 0,
            "modelsGenerated": self.models_saved + (1 if self.discovery is not None else 0),
            "reportsCreated": reports,
            "dataQualityScore": load.data_quality_score if load is not None else None,
            "overallConfidenceScore": round(100 * overall, 1) if overall is not None else None,
            "overallConfidenceMethod": (
                "mean of the figures measured in this run: conformance fitness, the cycle-time "
                "prediction's held-out share within 25 % of the actual remaining time and the "
                "next-activity prediction's held-out accuracy (each of the predictor used, "
                "model or baseline, measured on test cases never seen in fitting or selection), "
                "1 - estimated false-positive rate and data quality, each as a share; absent "
                "ones are left out"
            ),
            "cases": int(load.events[CASE].nunique()) if load is not None else 0,
        }

    def partial_document(self) -> dict[str, Any]:
        doc = self.base_document(True, self.summary())
        doc["recommendations"] = [r.to_dict() for r in self.recommendations]
        return doc

    def document(self) -> dict[str, Any]:
        doc = self.partial_document()
        doc["performance"] = self.performance(doc["summary"]["recordsAnalyzed"])
        return doc

    def run_all(self) -> dict[str, Any]:
        try:
            self.run_load()
            self.run_discovery()
            self.run_machine_learning()
            self.run_reports()
        finally:
            self.close()
        doc = self.document()
        self.write_document(doc)
        return doc


class DataEnrichmentRun(OperationRun):
    operation_type = "DataEnrichment"
    phase_state: ClassVar[dict[str, tuple[str, ...]]] = {
        phases.LOAD: ("raw",),
        phases.CLEANING: ("result",),
    }
    phase_parameters: ClassVar[dict[str, tuple[str, ...] | None]] = {
        phases.LOAD: ("timestampFormat", "timezone"),
        phases.CLEANING: ("cleaningRules",),
        phases.EXPORT: None,
    }

    def __init__(
        self,
        source: Path,
        out_dir: Path,
        params: dict[str, Any] | None = None,
        mapping: ColumnMapping | None = None,
        **kwargs: Any,
    ) -> None:
        self.params: EnrichmentParams = parse_enrichment_params(params)
        super().__init__(out_dir, **kwargs)
        self.source = Path(source)
        self.mapping = (mapping or ColumnMapping()).reading(
            self.params.timestamp_format, self.params.timezone
        )
        self.raw_params = dict(params or {})
        self.source_identity = [str(self.source), repr(mapping)]
        self.raw: Any = None
        self.result: Any = None
        # set by the service when the output is registered as a dataset
        self.enriched_dataset: dict[str, Any] | None = None

    def records_to_analyse(self) -> int | None:
        """The records the summary will count as analysed, once the load phase knows them."""
        return len(self.raw.frame) if self.raw is not None else None

    def run_load(self) -> dict[str, Any]:
        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            self.raw = read_event_log(self.source, self.mapping, progress=progress)
            n = len(self.raw.frame)
            return n, {"recordsLoaded": n, "sourceFormat": self.raw.source_format}

        return self._run_phase(phases.LOAD, work)

    def run_cleaning(self) -> dict[str, Any]:
        from analysis.enrichment import enrich_events

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            mapping = self.raw.mapping
            self.result = enrich_events(
                self.raw.frame,
                self.params.cleaning_rules,
                progress,
                timestamp_format=mapping.timestamp_format,
                timezone=mapping.timezone,
            )
            return self.result.records_in, self.result.to_dict()

        return self._run_phase(phases.CLEANING, work)

    def run_export(self) -> dict[str, Any]:
        from analysis.enrichment import write_enriched

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            suffix = {"processed_csv": ".csv", "parquet": ".parquet", "xes": ".xes"}.get(
                self.params.output_format, ".csv"
            )
            path = write_enriched(
                self.result.frame, self.out_dir / f"enriched{suffix}", self.params.output_format
            )
            fmt = {".csv": "CSV", ".parquet": "PARQUET", ".xes": "XES"}[suffix]
            self._artifact("Enriched Dataset", "Dataset", fmt, path, "Cleaned event log")
            n = len(self.result.frame)
            return n, {"recordsWritten": n, "outputFormat": self.params.output_format}

        return self._run_phase(phases.EXPORT, work)

    def document(self) -> dict[str, Any]:
        n = len(self.result.frame) if self.result is not None else 0
        summary: dict[str, Any] = {
            "recordsAnalyzed": self.result.records_in if self.result is not None else 0,
            "recordsOut": n,
            "cases": int(self.result.frame[CASE].nunique()) if self.result is not None else 0,
            "rulesApplied": list(self.params.cleaning_rules),
        }
        if self.enriched_dataset is not None:
            summary["enrichedDataset"] = self.enriched_dataset
        doc = self.base_document(True, summary)
        doc["performance"] = self.performance(summary["recordsAnalyzed"])
        return doc

    def run_all(self) -> dict[str, Any]:
        self.run_load()
        self.run_cleaning()
        self.run_export()
        doc = self.document()
        self.write_document(doc)
        return doc


class ReportGenerationRun(OperationRun):
    """An executive summary of a dataset (analysed quickly here) or of an earlier analysis."""

    operation_type = "ReportGeneration"
    phase_state: ClassVar[dict[str, tuple[str, ...]]] = {
        phases.COLLECT: ("results", "events", "dfg"),
    }
    phase_parameters: ClassVar[dict[str, tuple[str, ...] | None]] = {
        phases.COLLECT: (),
        phases.REPORTS: None,
    }

    def __init__(
        self,
        source: Path,
        out_dir: Path,
        params: dict[str, Any] | None = None,
        mapping: ColumnMapping | None = None,
        **kwargs: Any,
    ) -> None:
        self.params: ReportParams = parse_report_params(params)
        super().__init__(out_dir, **kwargs)
        self.source, self.mapping = Path(source), mapping
        self.raw_params = dict(params or {})
        self.source_identity = [str(self.source), repr(mapping)]
        self.results: dict[str, Any] = {}
        self.events: pd.DataFrame | None = None
        self.dfg: Any = None

    def records_to_analyse(self) -> int | None:
        """The records the summary will count as analysed, once the source is collected."""
        if self.records[phases.COLLECT].status != "Completed":
            return None
        return int(self.results.get("summary", {}).get("recordsAnalyzed") or 0)

    def run_collect(self) -> dict[str, Any]:
        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            if self.source.name == "results.json" or self.source.suffix == ".json":
                # a prior analysis: its document is the source of every figure
                self.results = json.loads(self.source.read_text())
                n = int(self.results.get("summary", {}).get("recordsAnalyzed") or 0)
                return n, {"source": "analysis results", "recordsAnalyzed": n}
            analysis = ProcessMiningRun(
                self.source,
                self.out_dir / "source-analysis",
                {
                    "analysisType": "quick",
                    "outputOptions": {"generateReports": False, "createVisualizations": False},
                },
                self.mapping,
                name=self.name,  # its document's operationName titles the summary
                token=self.token,
            )
            analysis.sink = None
            analysis.run_load()
            progress.update(1, 3, "Discovering the process")
            analysis.run_discovery()
            progress.update(2, 3, "Finding patterns")
            analysis.run_machine_learning()
            from analysis.recommendations import recommend

            analysis.recommendations = recommend(analysis.events, analysis.partial_document())
            self.results = analysis.document()
            self.events = analysis.events
            self.dfg = analysis.discovery.dfg
            n = len(analysis.events)
            return n, {"source": "dataset", "recordsAnalyzed": n}

        return self._run_phase(phases.COLLECT, work)

    def report_title(self) -> str | None:
        """The summary's title: the operation's name; None (the analysis's own name) when the
        run has none of its own (the CLI names a run after its source file)."""
        from_json = self.source.suffix == ".json"
        if self.name == self.operation_type or (from_json and self.name == self.source.name):
            return None
        return self.name

    def analysis_map_svg(self) -> Path | None:
        """The process map SVG of the analysis whose results.json is the source (its artifact,
        inside that analysis's result directory), or None."""
        if self.source.suffix != ".json":
            return None
        base = self.source.parent.resolve()
        for artifact in self.results.get("artifacts") or []:
            if isinstance(artifact, dict) and str(artifact.get("format")).upper() == "SVG":
                path = (base / str(artifact.get("path") or "")).resolve()
                if path.is_relative_to(base) and path.is_file():
                    return path
        return None

    def run_reports(self) -> dict[str, Any]:
        from analysis.executive import write_executive_summary

        def work(progress: Progress) -> tuple[int, dict[str, Any]]:
            paths = write_executive_summary(
                self.out_dir,
                self.results,
                self.events,
                self.dfg,
                formats=self.params.export_formats,
                include_visualizations=self.params.include_visualizations,
                progress=progress,
                lang=self.params.report_language,
                title=self.report_title(),
                map_svg=self.analysis_map_svg(),
            )
            for path in paths:
                fmt = "PPTX" if path.suffix == ".pptx" else "PDF"
                self._artifact(
                    "Executive Summary",
                    "Report",
                    fmt,
                    path,
                    "Executive summary" + (" slides" if fmt == "PPTX" else " report"),
                )
            return len(paths), {"reportsCreated": len(paths)}

        return self._run_phase(phases.REPORTS, work)

    def document(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "recordsAnalyzed": int(self.results.get("summary", {}).get("recordsAnalyzed") or 0),
            "reportsCreated": len(self.artifacts),
            "reportType": self.params.report_type,
        }
        doc = self.base_document(True, summary)
        doc["performance"] = self.performance(summary["recordsAnalyzed"])
        return doc

    def run_all(self) -> dict[str, Any]:
        self.run_collect()
        self.run_reports()
        doc = self.document()
        self.write_document(doc)
        return doc


RUNS: dict[str, type[ProcessMiningRun | DataEnrichmentRun | ReportGenerationRun]] = {
    "ProcessMiningAnalysis": ProcessMiningRun,
    "DataEnrichment": DataEnrichmentRun,
    "ReportGeneration": ReportGenerationRun,
}
