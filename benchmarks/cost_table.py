"""bench_train.py --cost-table: how an epoch's cost grows with the model's width and the batch size.

For every hidden width and batch size, mlpcli (as the config says) and each compared system
(PyTorch, JAX) train in fresh processes, the systems alternating cell by cell and round by
round; the medians of the timed epochs are printed as a Markdown table (seconds per epoch,
share of the matmul peak, peak RSS, mlpcli's time over each other system's) and, with
--plot, drawn as time per epoch against width on log-log axes.
"""

import statistics

NAMES = {"ours": "mlpcli", "torch": "PyTorch", "jax": "JAX"}


def run_cost_table(systems, widths, batches, repeats, measure, peak, plot_path=None):
    """Measure ``systems`` (``ours`` first) over ``widths`` x ``batches`` in ``repeats`` rounds, then print
    the table (and draw it at ``plot_path``). ``measure(system, width, batch)`` runs one process and
    returns {"seconds": its timed epochs, "first": its warm-up epoch, "peak_rss_mib", "version",
    "flops": an epoch's matrix-product FLOPs}; ``peak``: the matmul peak in GFLOP/s."""
    cells = [(width, batch) for width in widths for batch in batches]
    results = {(system, cell): [] for system in systems for cell in cells}
    versions = {}
    for r in range(repeats):
        for cell in cells:
            for system in systems:
                res = measure(system, *cell)
                results[system, cell].append(res)
                versions[system] = res["version"]
                print(f"  round {r + 1} width {cell[0]:>5} batch {cell[1]:>4} {NAMES[system]:<8} epoch "
                      f"{statistics.median(res['seconds']):7.3f} s  first {res['first']:7.3f} s  "
                      f"peak RSS {res['peak_rss_mib']:6.0f} MiB", flush=True)
    rows = {}
    for key, runs in results.items():
        seconds = statistics.median(t for res in runs for t in res["seconds"])
        rows[key] = (seconds, runs[0]["flops"] / seconds / 1e9 / peak,
                     statistics.median(res["peak_rss_mib"] for res in runs))
    print()
    print(markdown(systems, cells, rows, versions))
    if plot_path:
        plot(plot_path, systems, widths, batches, rows, versions)
        print(f"\nplot: {plot_path}")


def markdown(systems, cells, rows, versions):
    others = systems[1:]
    header = ["width", "batch", *(f"{versions[s]} s/epoch" for s in systems),
              *(f"mlpcli / {NAMES[s]}" for s in others), *(f"{NAMES[s]} % of peak" for s in systems),
              *(f"{NAMES[s]} peak RSS MiB" for s in systems)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in cells:
        seconds = [rows[s, cell][0] for s in systems]
        line = [f"{cell[0]:,}", str(cell[1]), *(f"{t:.3f}" for t in seconds),
                *(f"{seconds[0] / t:.2f}" for t in seconds[1:]), *(f"{rows[s, cell][1]:.1%}" for s in systems),
                *(f"{rows[s, cell][2]:.0f}" for s in systems)]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def plot(path, systems, widths, batches, rows, versions):
    """Seconds per epoch against width, log-log: a colour per system, a line style per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, system in zip(("C0", "C1", "C2"), systems):
        for style, batch in zip(styles * len(batches), batches):
            ax.plot(widths, [rows[system, (w, batch)][0] for w in widths], style, color=colour, marker="o",
                    label=f"{versions[system]}, batch {batch}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # only the widths measured are labelled
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_xlabel("hidden layers' width (units)")
    ax.set_ylabel("seconds per epoch")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
