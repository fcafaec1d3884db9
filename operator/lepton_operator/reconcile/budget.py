"""Budget policy of a TrainingJob: accrue the cost of its pods and stop it when spec.budget is spent."""

from __future__ import annotations

from ..api.trainingjob import TrainingJob
from ..api.trainingjob_status import CostStatus
from ..constants import COND_BUDGET
from .cost import accrue
from .status import JobPass


def over_budget(job: TrainingJob, cost: CostStatus) -> str | None:
    """Why the budget stops the job, or None."""
    budget = job.spec.budget
    if budget is None:
        return None
    if cost.accrued_usd >= budget.max_usd:
        return f"cost ${cost.accrued_usd:.2f} reached the budget of ${budget.max_usd:.2f}"
    if budget.basis == "Projected" and cost.projected_total_usd and float(cost.projected_total_usd) > budget.max_usd:
        return f"projected cost ${cost.projected_total_usd} exceeds the budget of ${budget.max_usd:.2f}"
    return None


def charge(p: JobPass) -> str | None:
    """Accrue the cost (projected with the trainer's ETA); BudgetExceeded with the reason when spent, else None
    and a look again when the budget would run out at the current rate."""
    st, budget = p.status, p.job.spec.budget
    eta = st.progress.eta_seconds if st.progress and st.progress.source == "endpoint" else None
    st.cost = accrue(p.job, p.seen.pods, p.seen.nodes, p.seen.prices, p.now, eta)
    stop = over_budget(p.job, st.cost)
    rate = float(st.cost.rate_usd_per_hour)
    if budget and rate > 0 and not stop:
        p.plan.requeue(max(1.0, (budget.max_usd - st.cost.accrued_usd) / rate * 3600))
    if stop:
        p.cond(COND_BUDGET, True, "BudgetExceeded", stop, warning=True)
    else:
        p.drop(COND_BUDGET, "WithinBudget", "cost is within spec.budget")
    return stop
