"""`dreamtray serve`: this machine's engine as a service for other machines (or a Ray Serve pool of them)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.engine.token import is_loopback

if TYPE_CHECKING:
    from dreamtray.app import App
    from dreamtray.engine.client import Engine
    from dreamtray.engine.server.routing import Routed
    from dreamtray.request import Request

DEFAULT_PORT = 8765
GALLERY_CHOICES = ("always", "asked", "never")


class ServedRoute:
    """The core's route for the served image APIs (OpenAI's and A1111's): plugins' `prepare_request`, styles,
    this service's engine, the gallery when `save` says so, `image_generated` (the server may not import the
    core, so `serve` hands it this)."""

    def __init__(self, app: App, engine: Engine):
        app.engine = engine  # this process makes its images on the engine it serves
        self.app = app

    def generate(self, request: Request, *, save: bool, on_job: Any) -> Routed:
        from dreamtray.engine.server.routing import Routed
        from dreamtray.generation import generate

        outcome = generate(self.app, request, on_job=on_job, save=save)
        return Routed(outcome.result, outcome.pngs, outcome.messages)

    def read_parameters(self, png: bytes) -> tuple[str, dict[str, str]] | None:
        """A PNG's A1111 text and its fields by A1111's names (`Prompt`, `Negative prompt`, `Size-1`...)."""
        from dreamtray.images.metadata import PARAMETERS_KEY, MetadataError, read_metadata

        try:
            found = read_metadata(png)
        except MetadataError:
            return None
        if found.parameters is None or PARAMETERS_KEY not in found.texts:
            return None
        parameters = found.parameters
        fields = {"Prompt": parameters.prompt, "Negative prompt": parameters.negative_prompt, **parameters.settings()}
        if parameters.width and parameters.height:
            fields |= {"Size-1": str(parameters.width), "Size-2": str(parameters.height)}
        return found.texts[PARAMETERS_KEY], fields


def read_token(host: str, token_file: Path | None) -> tuple[str, Path]:
    """The token clients must send, and its file; off loopback a token file must be named, with a strong token."""
    from dreamtray import paths
    from dreamtray.engine.token import WeakToken, check_strength, load_or_create_token

    if token_file is None:
        if not is_loopback(host):
            raise click.UsageError(
                f"Refusing to serve on {host} without a token: anyone who reaches this port could use the engine. "
                "Give --token-file FILE (a new token is written there when the file is missing or empty) and "
                "give the same token to the clients."
            )
        token_file = paths.data_dir() / "serve-token"
    try:
        token = load_or_create_token(token_file, warn=lambda message: click.echo(f"Warning: {message}", err=True))
    except OSError as exc:
        raise click.ClickException(f"Cannot use the token file {token_file}: {exc.strerror or exc}") from None
    if not is_loopback(host):
        try:
            check_strength(token, token_file)
        except WeakToken as exc:
            raise click.UsageError(str(exc)) from None
    return token, token_file


def tls_options(cert: Path | None, key: Path | None) -> dict[str, str] | None:
    if (cert is None) != (key is None):
        raise click.UsageError("TLS needs both --tls-cert and --tls-key (PEM files).")
    if cert is None:
        return None
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


@click.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every network)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the token clients must send (created when missing). Required off loopback.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TLS private key (PEM).")
@click.option("--log-prompts", is_flag=True, help="Write prompts to the log (they are left out by default).")
@click.option("--model", help="Model used when a request names none (default: the config's).")
@click.option(
    "--rate-limit",
    type=click.IntRange(0),
    default=120,
    show_default=True,
    help="Requests a minute for each token; 0 for no limit.",
)
@click.option(
    "--max-body-mb", type=click.IntRange(1), default=32, show_default=True, help="Largest request body accepted."
)
@click.option(
    "--gallery",
    type=click.Choice(GALLERY_CHOICES),
    default="always",
    show_default=True,
    help="Which served images this machine's gallery keeps: all, those an A1111 request asks for (save_images), none.",
)
@click.option(
    "--ray", "use_ray", is_flag=True, help="Serve through Ray Serve: a pool of engine replicas behind this endpoint."
)
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True, help="With --ray: engine replicas.")
@click.option(
    "--replica-gpus",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="With --ray: GPUs for each replica.",
)
@click.option(
    "--replica-cpus",
    type=click.FloatRange(0.1),
    default=0.5,
    show_default=True,
    help="With --ray: CPUs for each replica.",
)
@pass_app
def serve_command(
    ctx: Context,
    host,
    port,
    token_file,
    tls_cert,
    tls_key,
    log_prompts,
    model,
    rate_limit,
    max_body_mb,
    gallery,
    use_ray,
    replicas,
    replica_gpus,
    replica_cpus,
) -> None:
    """Serve this machine's engine to other machines: OpenAI's images API (/v1), AUTOMATIC1111's (/sdapi/v1),
    and dreamtray's jobs with progress."""
    from dataclasses import replace

    ssl = tls_options(tls_cert, tls_key)
    token, token_path = read_token(host, token_file)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    scheme = "https" if ssl else "http"
    if not ssl and not is_loopback(host):
        click.echo(
            "Warning: no TLS, so the token and prompts cross the network readable; give --tls-cert and --tls-key.",
            err=True,
        )
    click.echo(f"Starting the dreamtray engine on {scheme}://{host}:{port} (token in {token_path}).", err=True)
    limits = {"rate_per_minute": rate_limit, "max_body_bytes": max_body_mb * 2**20, "log_prompts": log_prompts}
    settings = ctx.app.local_engine.settings  # the config's engine settings, as this machine's tray uses them
    settings = replace(settings, default_model=model or settings.default_model)
    if use_ray:
        from dreamtray.engine.server.ray_deployment import PoolOptions, run_ray_serve

        click.echo(
            "Note: through Ray, the OpenAI API sends requests to the replicas as they are (styles applied; no plugins, "
            "no gallery, no metadata in the PNGs) and the AUTOMATIC1111 API is not offered.",
            err=True,
        )

        pool = PoolOptions(replicas=replicas, gpus=replica_gpus, cpus=replica_cpus)
        run_ray_serve(settings, token, host, port, pool, ssl=ssl, styles=ctx.app.styles, **limits)
        return
    from dreamtray.engine.server.service import ServeError, serve

    try:
        serve(
            settings,
            token,
            host,
            port,
            ssl=ssl,
            clients_may_stop=False,
            styles=ctx.app.styles,
            route=lambda engine: ServedRoute(ctx.app, engine),
            gallery=gallery,
            **limits,
        )
    except ServeError as exc:  # a TLS file that does not load: the message names it
        raise click.ClickException(f"Cannot serve on {host}:{port}: {exc}") from None
    except OSError as exc:  # the address is taken or not this machine's
        raise click.ClickException(f"Cannot serve on {host}:{port}: {exc.strerror or exc}") from None


COMMANDS: list[click.Command] = [serve_command]
