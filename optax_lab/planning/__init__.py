"""Planning: a configuration becomes lessons (`plan`), lessons become jobs grouped into compiled
programs, and a planner hands the runner those programs in rounds. `RunPlanner` is
`optax-lab run`'s; the tuner's is `optax_lab.tuning.TunePlanner`.
"""

from optax_lab.planning._jobs import Planner, Round, RunPlanner, distinct_jobs, group_label, program_groups
from optax_lab.planning._lessons import (
    plan,
    point_text,
    ranking_lessons,
    selected_workloads,
    sweep_lessons,
    sweep_points,
    target_loss,
)

__all__ = [
    "Planner",
    "Round",
    "RunPlanner",
    "distinct_jobs",
    "group_label",
    "plan",
    "point_text",
    "program_groups",
    "ranking_lessons",
    "selected_workloads",
    "sweep_lessons",
    "sweep_points",
    "target_loss",
]
