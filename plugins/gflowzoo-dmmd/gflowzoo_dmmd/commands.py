"""``gflowzoo dmmd ...`` commands. Only typer and rich at import time; torch and matplotlib inside the commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["build_app", "plot_diagnostics"]


def _handle(fn: Any) -> Any:
    from gflowzoo.api import handle_errors

    return handle_errors(fn)


def build_app() -> typer.Typer:
    """The ``dmmd`` sub-application."""
    sub = typer.Typer(help="DMMD plugin tools: the 1-D adaptive-kernel demo and critic diagnostics.",
                      no_args_is_help=True)

    @sub.command("gaussian-demo")
    @_handle
    def gaussian_demo(
        out: Annotated[Path, typer.Option("--out", "-o", help="PNG file for the plot.")] = Path("gaussian-demo.png"),
        steps: Annotated[int, typer.Option("--steps", help="Flow iterations.")] = 300,
        eta: Annotated[float, typer.Option("--eta", help="Euler step size.")] = 3.0,
        n: Annotated[int, typer.Option("--n", help="Number of particles.")] = 1000,
        mu0: Annotated[float, typer.Option("--mu0", help="Mean of the initial particles N(mu0, 1).")] = 10.0,
        distance: Annotated[
            str, typer.Option("--distance", help="Adaptive width from the 'max' or 'mean' distance.")
        ] = "max",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the initial particles.")] = 0,
    ) -> None:
        """The 1-D adaptive-kernel experiment (docs/dmmd.md, section "The Gaussian demo"): MMD flow from N(mu0, 1)
        to N(0, 1) with fixed kernel widths {0.1, 1, 3, 10} vs the adaptive width a*; plots |mean| against the
        iteration (log scale)."""
        from gflowzoo.api import UserError

        from .gaussian_demo import first_below, plot_curves, run_gaussian_demo

        if steps < 1 or n < 2 or not eta > 0:
            raise UserError("--steps must be >= 1, --n >= 2 and --eta > 0.")
        if distance not in ("max", "mean"):
            raise UserError("--distance must be 'max' or 'mean'.")
        curves = run_gaussian_demo(steps=steps, eta=eta, n=n, mu0=mu0, seed=seed, distance=distance)
        out.parent.mkdir(parents=True, exist_ok=True)
        plot_curves(curves, str(out))
        from rich.console import Console
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False)
        for col in ("width", "first iteration with |mean| < 0.5", "final |mean|"):
            table.add_column(col)
        for name, c in curves.items():
            hit = first_below(c, 0.5)
            table.add_row(name, "never" if hit is None else str(hit), f"{c['abs_mean'][-1]:.4g}")
        Console().print(table)
        typer.echo(f"plot: {out}")

    @sub.command("diagnose")
    @_handle
    def diagnose(
        run_dir: Annotated[Path, typer.Argument(help="A run directory of dmmd, a-dmmd, a-dmmd-e or dkale.")],
        out: Annotated[
            Optional[Path], typer.Option("--out", "-o", help="Folder for the plots (default RUN/diagnostics).")
        ] = None,
        levels: Annotated[int, typer.Option("--levels", help="Number of noise levels from t_min to 1.")] = 20,
        n: Annotated[int, typer.Option("--n", help="Clean and noisy samples per level.")] = 256,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the evaluation batches.")] = 0,
        live: Annotated[bool, typer.Option("--live", help="Use the live weights instead of the EMA copy.")] = False,
        device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    ) -> None:
        """Critic diagnostics of a trained run, evaluated on data: the objective (MMD^2 or KALE) between P and P_t
        and the mean witness-gradient norm against t, and the learned kernel width h(t) for the rbf kernel.
        Writes PNG plots and prints the numbers."""
        from gflowzoo.api import RunDir, UserError, load_run

        if levels < 2 or n < 2:
            raise UserError("--levels and --n must be >= 2.")
        spec, method, _ = load_run(run_dir, None, device)
        if not hasattr(method, "diagnose"):
            raise UserError(
                f"{run_dir} is a run of {spec.method!r}, which has no noise-conditional critic to diagnose."
            )
        res = method.diagnose(levels=levels, n=n, seed=seed, ema=not live)
        # the default folder is part of the run: its files are written through the run's RunDir
        folder = out or Path(run_dir) / "diagnostics"
        write = None if out is not None else lambda name, data: RunDir(run_dir).write_file(f"diagnostics/{name}", data)
        paths = plot_diagnostics(res, folder, title=f"{spec.method} on {spec.dataset}", write=write)
        from rich.console import Console
        from rich.table import Table

        keys = [k for k in res if k != "t"]
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("t")
        for k in keys:
            table.add_column(k)
        for i, t in enumerate(res["t"]):
            table.add_row(f"{t:.4f}", *[f"{res[k][i]:.5g}" for k in keys])
        Console().print(table)
        for p in paths:
            typer.echo(f"plot: {p}")

    return sub


def plot_diagnostics(res: dict[str, list[float]], folder: Path, title: str = "",
                     write: Callable[[str, bytes], Path] | None = None) -> list[Path]:
    """One PNG per diagnostic (everything in ``res`` except ``t``) against t, ``<folder>/<key>.png``; returns the
    paths. Each file is written atomically by ``write(name, png_bytes)`` (default: into ``folder``, through a
    ``RunDir`` of it)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    if write is None:
        from gflowzoo.api import RunDir

        write = RunDir(folder).write_file
    labels = {"mmd2": "MMD^2(P, P_t)", "kale": "KALE(P_t || P) objective", "grad_norm": "mean |grad_x f_t| on data",
              "width": "kernel width h(t)"}
    paths = []
    for key, values in res.items():
        if key == "t":
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
        ax.plot(res["t"], values, marker="o", ms=3)
        ax.set_xlabel("noise level t")
        ax.set_ylabel(labels.get(key, key))
        if key == "width" and min(values) > 0:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        write(f"{key}.png", buf.getvalue())
        paths.append(folder / f"{key}.png")
    return paths
