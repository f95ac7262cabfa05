import cProfile, pstats, os
from modnas_ops.config import load_config
from modnas_ops.search import SearchConfig, run_search
cfg = load_config(SearchConfig, None, ["search." + x for x in []] + [f"benchmark.table={os.environ['MODNAS_NB201_TABLE']}", "epochs=1", "steps_per_epoch=150", "shortlist.k=0", "checkpoint_dir=", "threads=1", "benchmark.surrogate_epochs=50", "benchmark.predictor_epochs=5"])
import modnas_ops.architect as A
pr = cProfile.Profile()
orig = A.Architect.hypernet_step
def wrapped(self, *a, **k):
    pr.enable(); 
    try: return orig(self, *a, **k)
    finally: pr.disable()
A.Architect.hypernet_step = wrapped
run_search(cfg, progress=False)
pstats.Stats(pr).sort_stats("cumtime").print_stats(25)
