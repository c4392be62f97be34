"""The `tryon` command: thin verbs over tryon (and tryon.export for model building)."""
import typer

from . import bench_cmd, cache_cmd, catalogue_cmd, demo_cmd, info_cmd, models_cmd, run_cmd, serve_cmd

app = typer.Typer(
    help="Virtual try-on (JPP-Net + CP-VTON) on ONNX Runtime.\n\n"
         "First time: `tryon demo` (synthetic weights), or put the published checkpoints in "
         "checkpoints/ and run `tryon export`, then `tryon run person.jpg shirt.jpg -o out.png`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (models_cmd, run_cmd, catalogue_cmd, info_cmd, serve_cmd, bench_cmd, demo_cmd, cache_cmd):
    module.register(app)
