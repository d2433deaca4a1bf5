"""What a study shows: pareto.py (fronts, hypervolume; the only user of Optuna's private helpers), figures.py
(figure data, then drawing), report.py (HTML + summary.json), export.py (a trial on a full-size backbone),
paper.py (the paper's reference models)."""
