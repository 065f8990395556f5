"""Plain-text tables of ``mixplan bench optimize`` results."""

from __future__ import annotations


def format_summary(res: dict) -> str:
    lines = [f"mfms-bo speed-up (cost for the baseline to reach its final regret / cost for mfms-bo to reach it); "
             f"{res['seeds']} seeds, budget {res['budget']:g}, at most {res['max_iter']} runs per strategy "
             f"({res.get('max_iter_mfms')} for mfms-bo); 'median' on cost incl. the shared initial design",
             f"{'objective':<22} {'baseline':<10} {'median':>7} {'25-75%':>13} {'min-max':>15} {'reached':>8} "
             f"{'regret b':>9} {'regret m':>9} {'own-cost median (25-75%)':>26}"]
    for r in res["summary"]:
        lines.append(f"{r['objective']:<22} {r['baseline']:<10} {r['speedup_median']:>7.2f} "
                     f"{r['speedup_q25']:>6.2f}-{r['speedup_q75']:<6.2f} {r['speedup_min']:>7.2f}-{r['speedup_max']:<7.2f} "
                     f"{r['mfms_reached']:>4}/{r['seeds']:<3} {r['baseline_final_regret_median']:>9.4f} "
                     f"{r['mfms_final_regret_median']:>9.4f} {r['speedup_own_median']:>9.3g} "
                     f"({r['speedup_own_q25']:.3g}-{r['speedup_own_q75']:.3g})")
    lat = res.get("latency")
    if lat:
        lines.append(f"proposal latency (mfms-bo, q={lat['q']}, {lat['runs']} runs x {lat['checkpoints_per_run']} "
                     f"checkpoints): cold {lat['cold_s']:.2f} s, warm median {lat['warm_median_s']:.2f} s "
                     f"({', '.join(f'{t:.2f}' for t in lat['warm_s'])})")
    return "\n".join(lines)
