"""Black-box multi-objective NAS baselines over the SearchSpace interface (all objectives minimised).

``get_baseline(name, **hyper_parameters).run(space, evaluator, budget, seed) -> History``; every method
goes through the same :class:`BudgetedEvaluator` (cache + count of true evaluations + wall time).
``supernet_error`` (torch) and ``config`` (the entry point's config) are imported from their modules.
"""

from .base import Baseline, available_baselines, baseline_class, get_baseline, register_baseline, sample_new
from .budget import Budget, BudgetedEvaluator, BudgetExhausted
from .comparison import aggregate_rows, common_normaliser, pad_curves, run_to_target, summary_row
from .evaluators import Evaluator, MeasuredEvaluator, MemoisedEvaluator, TableEvaluator
from .evolution import AGEMOEABaseline, NSGA2Baseline, UNSGA3Baseline
from .history import History, HypervolumeTracker, evaluations_to_reach, hypervolume_curve
from .linas import LINAS
from .local_search import ParetoLocalSearch
from .motpe import MOTPE
from .random_search import RandomSearch

__all__ = [
    "LINAS",
    "MOTPE",
    "AGEMOEABaseline",
    "Baseline",
    "Budget",
    "BudgetExhausted",
    "BudgetedEvaluator",
    "Evaluator",
    "History",
    "HypervolumeTracker",
    "MeasuredEvaluator",
    "MemoisedEvaluator",
    "NSGA2Baseline",
    "ParetoLocalSearch",
    "RandomSearch",
    "TableEvaluator",
    "UNSGA3Baseline",
    "aggregate_rows",
    "available_baselines",
    "baseline_class",
    "common_normaliser",
    "evaluations_to_reach",
    "get_baseline",
    "hypervolume_curve",
    "pad_curves",
    "register_baseline",
    "run_to_target",
    "sample_new",
    "summary_row",
]
