"""serve: the HTTP service (needs the serve extra), in this process or on Ray Serve."""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import time
from pathlib import Path

import typer

from ..errors import EXIT_ENVIRONMENT, InputError
from . import common
from .errors import friendly

ENGINES = ("local", "ray")


def register(app: typer.Typer):
    app.command(help="Serve try-ons over HTTP: /v1/persons, /v1/tryon, the seed's /cloth, a /web page, /docs.\n\n"
                     "Examples:\n\n"
                     "  tryon serve --models models_onnx --host 127.0.0.1 --port 8000\n\n"
                     "  tryon serve --engine ray --cache redis://127.0.0.1:6379/0 --parse-replicas 1-4   (Ray "
                     "Serve: Parse and Dress deployments scaled apart)")(serve)


@friendly
def serve(models: Path = common.MODELS,
          host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
          port: int = typer.Option(8000, help="TCP port (1-65535)"),
          max_concurrent: int = typer.Option(1, min=1, help="inferences running at once (on CPU each "
                                                             "already uses every core); --engine ray: parses at "
                                                             "once in each Parse replica"),
          queue: int = typer.Option(8, min=0, help="requests waiting for a slot; beyond: 503 + Retry-After "
                                                   "(--engine ray: calls waiting for each deployment, >= 1)"),
          engine: str = typer.Option("local", help="local (this process) or ray (Ray Serve: Parse and Dress "
                                                   "deployments scaled apart; needs --cache redis://...)"),
          address: str = typer.Option(None, help="Ray cluster to join (--engine ray) [default: start one on this "
                                                 "machine]"),
          parse_replicas: str = typer.Option("1", help="Parse (JPP-Net) replicas: N, or MIN-MAX to autoscale on "
                                                       "the parse queue (--engine ray)"),
          dress_replicas: int = typer.Option(1, min=1, help="Dress (GMM/TOM) replicas (--engine ray)"),
          cpus_per_replica: int = typer.Option(1, min=1, help="CPUs each replica reserves, and its ONNX Runtime "
                                                              "threads (--engine ray; --threads is for local)"),
          gallery: list[Path] = typer.Option([], help="folder of garment images for the gallery (repeatable)"),
          max_body_mb: float = typer.Option(20, min=0.001, help="largest request body, MB"),
          max_garments: int = typer.Option(16, min=1, help="garments per POST /v1/persons/{id}/tryon"),
          predress: int = typer.Option(16, min=0, help="gallery garments dressed ahead, in the background, after "
                                                       "each parse of a person (0: off; --engine local)"),
          max_connections: int = typer.Option(64, min=1, help="connections open at once; beyond: 503, "
                                                                    "closed (health checks still answered)"),
          keep_alive: float = typer.Option(5, min=0.1, help="seconds an idle keep-alive connection stays open"),
          read_timeout: float = typer.Option(10, min=0.1, help="seconds for a request's headers to arrive, "
                                                               "and between two parts of its body"),
          upload_timeout: float = typer.Option(60, min=0.1, help="seconds for a whole request body to arrive"),
          allowed_host: list[str] = typer.Option([], help="a host name this server answers to, besides IP "
                                                          "addresses, localhost and --host (repeatable; * for any)"),
          allowed_origin: list[str] = typer.Option([], help="a site whose pages may call this server from the "
                                                            "browser, e.g. https://shop.example (repeatable; * any)"),
          api_key: list[str] = typer.Option([], help="a key clients must send as Authorization: Bearer KEY, "
                                                     "`key` or `name:key` (repeatable; also TRYON_API_KEYS, comma "
                                                     "separated); /healthz, /readyz, /web and /docs stay open"),
          api_keys_file: Path = typer.Option(None, help="a file of API keys: one a line, `name:key` or `key`; "
                                                        "blank lines and # comments skipped"),
          no_auth: bool = typer.Option(False, help="serve without API keys on an address other hosts reach"),
          log_format: str = typer.Option("text", help="text, or json: each log line one JSON object (the access "
                                                      "log: method, route, status, ms, request_id, key)"),
          cache: str = common.CACHE, no_cache: bool = common.NO_CACHE,
          cache_ttl_hours: float = common.CACHE_TTL, cache_max_mb: float = common.CACHE_MB,
          provider: str = common.PROVIDER, threads: int = common.THREADS,
          scales: str = common.SCALES, mirror: bool = common.MIRROR, precision: str = common.PRECISION):
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: choose local or ray")
    if log_format not in ("text", "json"):
        raise InputError(f"--log-format {log_format!r}: choose text or json")
    try:
        from ..serve import create_app
        from ..serve.operations import Operations
        from ..serve.server import Connections, listen, make_server
    except ImportError as exc:
        typer.secho(f"error: serve needs the serve extra ({exc.name} missing): "
                    "pip install 'tryon-onnx[serve,cpu]'", fg="red", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    from ..serve.memory_budget import check_room_for

    if engine == "local":
        check_room_for(max_concurrent)  # first: a concurrency the memory cannot hold stops the start
    from ..serve.auth import ENV, ApiKeys
    from ..serve.gallery import Gallery
    from ..serve.guard import allowed_host_names, normal_origin
    from ..serve.limits import Limits

    # Everything that can be wrong with the options fails here, in a second, before the models load.
    limits = Limits(max_body_bytes=int(max_body_mb * 2**20), max_garments=max_garments,
                    read_timeout_s=read_timeout, upload_timeout_s=upload_timeout, predress=predress)
    connections = Connections(max_connections, keep_alive, read_timeout)
    hosts = allowed_host_names(host, allowed_host)
    origins = tuple(normal_origin(origin) for origin in allowed_origin)
    settings = common.pipeline_settings(models, provider, threads, scales, mirror, precision,
                                        common.store_settings(cache, no_cache, cache_ttl_hours, cache_max_mb))
    garments = Gallery.load(gallery)
    keys = ApiKeys.gather(api_key, api_keys_file, os.environ.get(ENV))
    _check_auth(host, keys, no_auth)
    if engine == "ray":
        from ..serve.ray_engine import ServeArgs

        args = ServeArgs(settings, parse_replicas=_replicas(parse_replicas), dress_replicas=dress_replicas,
                         cpus_per_replica=cpus_per_replica, max_concurrent=max_concurrent, queue=queue,
                         max_connections=max_connections, max_body_mb=max_body_mb, max_garments=max_garments,
                         read_timeout=read_timeout, upload_timeout=upload_timeout, allowed_hosts=hosts,
                         allowed_origins=origins, gallery=tuple(str(folder) for folder in gallery),
                         log_format=log_format)
        return _serve_on_ray(args, garments, keys, host, port, keep_alive, address)
    with listen(host, port) as sock:  # or CannotListen: one line and exit 8, through `friendly`
        # Loaded before serving: a broken models folder stops the start, not the first request.
        tryon = settings.build()
        app = Operations(create_app(tryon, gallery=garments, max_concurrent=max_concurrent, queue=queue,
                                    limits=limits, allowed_hosts=hosts, allowed_origins=origins), keys)
        if tryon.synthetic:
            typer.secho(common.SYNTHETIC_NOTE, fg="yellow", err=True)
        info = tryon.store.info()
        kept = f"{info['kind']} store, persons kept {cache_ttl_hours:g} h" + \
            (f" (off: {info['disabled']})" if info.get("disabled") else "")
        typer.echo(f"serving http://{host}:{port}/web  (API docs: /docs; {kept}; "
                   f"API keys: {len(keys.keys) or 'none'})")
        server = make_server(app, connections)
        _log_as(log_format)
        server.run(sockets=[sock])


def _check_auth(host: str, keys, no_auth: bool):
    """Without keys, only this machine may connect, unless --no-auth says otherwise."""
    if keys and no_auth:
        raise InputError("--no-auth with API keys given: drop one or the other")
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if not (keys or no_auth or loopback):
        raise InputError(f"--host {host} without API keys would let anyone who reaches it upload photos and read "
                         "persons: give --api-key, --api-keys-file or TRYON_API_KEYS, or --no-auth to serve openly")


def _log_as(log_format: str):
    """Every log line in one format: ours (tryon.*) and uvicorn's (make_server turns its access log off)."""
    from ..serve.operations import JsonLines

    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter("%(levelname)s:     %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _replicas(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise InputError(f"--parse-replicas {text!r}: expected N or MIN-MAX, e.g. 1-4") from None


def _serve_on_ray(args, garments, keys, host: str, port: int, keep_alive: float, address: str | None):
    """Deploy on Ray Serve and serve until Ctrl-C or SIGTERM; then the deployments go. The access
    log is in the Ingress replica's Serve log (Ray's logs/serve/replica_tryon_Ingress_*.log)."""
    from ..ray_cluster import import_ray
    from ..serve.ray_engine import running
    from ..serve.server import listen
    from ..store.redis_store import redacted

    import_ray("serve")  # or RayMissingError: its one line and exit 5, through `friendly`
    if address is None:  # Serve's proxy will listen here: a busy port fails now, not inside Ray
        listen(host, port).close()
    with running(args, host, port, keep_alive, address, gallery=garments, keys=keys):
        low, high = args.parse_replicas
        typer.echo(f"serving http://{host}:{port}/web on Ray Serve  (Parse {low if low == high else f'{low}-{high}'}, "
                   f"Dress {args.dress_replicas} replicas, {args.cpus_per_replica:g} CPU each; persons in "
                   f"{redacted(args.pipeline.store.location)}, kept {args.pipeline.store.ttl_hours:g} h; "
                   f"API keys: {len(keys.keys) or 'none'}; access log in Ray's logs/serve/replica_tryon_Ingress_*)")
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: the deployments go
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopping", err=True)
