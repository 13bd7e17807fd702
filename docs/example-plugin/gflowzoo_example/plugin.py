"""Entry module of the ``example`` plugin: hook implementations only.

Keep this module light: gflowzoo imports it for every command, including ``gflowzoo --help``. Register components
by import path (``"package.module:Object"``) so that torch is imported only when a component is built, and import
heavy libraries inside command functions.
"""

from __future__ import annotations

from gflowzoo.api import hookimpl


@hookimpl
def gflowzoo_register(register):
    """Register this plugin's components (one ``register`` call each)."""
    register("kernel", "laplace", "gflowzoo_example.laplace:LaplaceKernel",
             "Laplace kernel exp(-||a - b|| / sigma) (example plugin)")
    register("method", "moment-mlp", "gflowzoo_example.moment_mlp:MomentMLP",
             "MLP generator trained to minimise MMD with a fixed kernel, GMMN-style (example plugin)")


@hookimpl
def gflowzoo_register_commands(app):
    """Add ``gflowzoo example gram``."""
    import typer  # typer is light; torch is imported inside the command

    example = typer.Typer(help="Commands of the example plugin.", no_args_is_help=True, rich_markup_mode=None)

    @example.command("gram")
    def gram(
        points: str = typer.Option("0,0;1,0;0,2", help="Points as 'x,y;x,y;...'."),
        sigma: float = typer.Option(1.0, help="Kernel width."),
    ) -> None:
        """Print the Laplace-kernel Gram matrix of a few points."""
        import torch

        from .laplace import LaplaceKernel

        x = torch.tensor([[float(v) for v in p.split(",")] for p in points.split(";")])
        for row in LaplaceKernel(sigma=sigma).gram(x, x).tolist():
            typer.echo(" ".join(f"{v:.4f}" for v in row))

    app.add_typer(example, name="example")
