"""The 16-point SVC grid shared by the real-workload baselines (and the xrun spec)."""

C = [0.1, 1.0, 10.0, 100.0]
GAMMA = [0.0001, 0.001, 0.01, 0.1]
CV = 5
SCORING = "accuracy"
GRID = {"C": C, "gamma": GAMMA}
