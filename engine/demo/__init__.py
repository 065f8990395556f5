"""The bundled demo (``runs.duckdb``), built by ``mixplan demo build``:

- :mod:`engine.demo.study`: the study ``demo``, real built-in-trainer runs at three small sizes;
- :mod:`engine.demo.validation`: real runs at the demo's target (beyond the observed sizes) of the
  mixtures worth checking, marked as validation so that no model fits on them, and the verdict;
- :mod:`engine.demo.bo`: the ``demo-bo-*`` studies, one autopilot loop per strategy on the
  synthetic landscape (known truth), for the Trajectory page's comparison.
"""

from engine.demo.study import (
    DEMO_DOMAINS,
    DEMO_STUDY,
    DemoPlan,
    build_demo,
    demo_config,
    design_mixtures,
    plan_trials,
)

__all__ = ["DEMO_DOMAINS", "DEMO_STUDY", "DemoPlan", "build_demo", "demo_config", "design_mixtures", "plan_trials"]
