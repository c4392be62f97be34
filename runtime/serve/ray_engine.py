"""`tryon serve --engine ray`: the web service on Ray Serve, an Ingress (the FastAPI app) over
Parse (JPP-Net, autoscaled) and Dress (GMM/TOM, calls batched) deployments, sharing persons
through Redis (the diagram: docs/distributed.md). `app` is the builder a Serve config names;
`running` deploys it from `tryon serve --engine ray`."""
import asyncio
import dataclasses
import logging
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import Request
from pydantic import BaseModel, Field

from ..errors import InputError, RuntimeSetupError, TryonError, Unavailable
from ..models.graphs import model_hashes
from ..parsed_person import ParseCall, ParsedPerson
from ..pipeline import DRESS_BATCH, PipelineSettings, TryOn
from ..ray_cluster import check_cpus, check_node_models, import_ray, joined_cluster, tryon_cause
from ..store import StoreSettings
from ..store.redis_store import is_redis_url
from . import create_app
from .answers import HealthAnswer
from .auth import ENV, ApiKeys
from .gallery import Gallery
from .guard import LOCAL_NAMES, normal_origin
from .inference import Inference, encoded
from .limits import Limits, Overloaded, retry_after
from .operations import Operations
from .web_routes import healthz as local_healthz

APP = "tryon"
BATCH_WAIT_S = 0.01  # how long a Dress replica waits for more calls to batch with the first
STEADY = ("HEALTHY", "UPSCALING", "DOWNSCALING")  # a deployment's states in which no replica is missing


@dataclass
class ServeArgs:
    """Everything the deployments need: `tryon serve`'s options, or a Serve config's `args`
    (`pipeline` and its `store` as mappings of their fields)."""
    pipeline: PipelineSettings
    parse_replicas: tuple[int, int] = (1, 1)  # min, max: autoscaled between them on the parse queue
    dress_replicas: int = 1
    cpus_per_replica: float = 1  # CPUs each Parse and Dress replica reserves; its ONNX Runtime threads
    max_concurrent: int = 1  # parses at once in one Parse replica
    queue: int = 8  # calls waiting for a Parse (or Dress) replica, per Ingress replica; beyond: 503
    max_connections: int = 64  # requests at once in the Ingress; beyond, Serve's proxy holds them
    max_body_mb: float = 20
    max_garments: int = 16
    read_timeout: float = 10
    upload_timeout: float = 60
    allowed_hosts: tuple[str, ...] = LOCAL_NAMES
    allowed_origins: tuple[str, ...] = ()
    gallery: tuple[str, ...] = ()  # folders of garment images, read where the app is built
    upscale_delay_s: float = 10  # how long the parse queue must stay long before a Parse replica is added
    model_hashes: dict = field(default_factory=dict)  # the builder's, checked by each replica on its node
    log_format: str = "text"  # or json: every replica's Serve log, the Ingress's access lines in it, JSON

    def __post_init__(self):
        if isinstance(self.pipeline, dict):
            fields = dict(self.pipeline)
            store = fields.pop("store", None)
            fields["store"] = StoreSettings(**store) if isinstance(store, dict) else store
            if "scales" in fields:
                fields["scales"] = tuple(fields["scales"])
            self.pipeline = PipelineSettings(**fields)
        location = self.pipeline.store.location if self.pipeline.store else None
        if not is_redis_url(location):
            raise InputError(f"--engine ray needs --cache redis://HOST:PORT/DB (got {location or 'none'}): its "
                             "replicas run in other processes and on other nodes, and a person parsed by one must be "
                             "found by the others; a store of each replica's own (memory, or SQLite on its node) "
                             "would answer 404 for persons parsed elsewhere")
        for name in ("parse_replicas", "allowed_hosts", "gallery"):  # a Serve config gives lists
            setattr(self, name, tuple(getattr(self, name)))
        low, high = self.parse_replicas
        if not 1 <= low <= high or min(self.dress_replicas, self.max_concurrent, self.queue, self.max_connections) < 1 \
                or self.cpus_per_replica <= 0:
            raise InputError(f"replica counts, --max-concurrent, --queue (Serve queues one call at least) and "
                             f"--max-connections must be >= 1, --parse-replicas MIN-MAX with MIN <= MAX, and "
                             f"--cpus-per-replica > 0; got parse {low}-{high}, dress {self.dress_replicas}, "
                             f"max_concurrent {self.max_concurrent}, queue {self.queue}, "
                             f"max_connections {self.max_connections}, cpus {self.cpus_per_replica:g}")
        if self.log_format not in ("text", "json"):
            raise InputError(f"log_format {self.log_format!r}: choose text or json")
        self.allowed_origins = tuple(normal_origin(origin) for origin in self.allowed_origins)
        self.limits()  # checks them

    def limits(self) -> Limits:
        return Limits(max_body_bytes=int(self.max_body_mb * 2**20), max_garments=self.max_garments,
                      read_timeout_s=self.read_timeout, upload_timeout_s=self.upload_timeout)

    def replica_pipeline(self, load_jppnet: bool) -> TryOn:
        """This replica's pipeline, once its node's models are checked to be the builder's; a
        Dress replica's (load_jppnet=False) keeps no store of its own."""
        check_node_models(self.pipeline.models, self.pipeline.precision, self.model_hashes, "service was deployed with")
        settings = self.pipeline if load_jppnet else dataclasses.replace(self.pipeline, store=None)
        return settings.build(threads=max(1, int(self.cpus_per_replica)), load_jppnet=load_jppnet)


class Replica:
    """A pipeline in a Serve replica. An error of the machine (ONNX Runtime failing, memory)
    fails the health check, and Serve replaces the replica; an input's error is the caller's."""
    load_jppnet = True

    def __init__(self, args: ServeArgs):
        self.pipeline = args.replica_pipeline(self.load_jppnet)
        self.broken = ""

    def describe(self) -> dict:
        return self.pipeline.describe()

    def check_health(self):
        if self.broken:
            raise RuntimeError(f"this replica's pipeline failed ({self.broken}); Serve starts another")

    def _run(self, work, *args):
        try:
            return work(*args)
        except Exception as exc:
            if isinstance(exc, MemoryError) or type(exc).__module__.startswith("onnxruntime"):
                self.broken = f"{type(exc).__name__}: {exc}"
            raise


class ParseReplica(Replica):
    def __init__(self, args: ServeArgs):
        super().__init__(args)
        self.reported = Counter()  # this replica's store counters as far as an answer has carried them

    async def parse(self, photo: bytes, options) -> tuple[bytes, dict, bool, Counter]:
        """The person's stored form, this call's timings, whether it came from the store, and the
        replica's store counts (hits, misses) since its last answer, for the Ingress's /metrics."""
        call = await asyncio.to_thread(self._run, self.pipeline.parse_call, photo, options)
        counters = Counter(self.pipeline.store.counters())  # no await till reported: no answer carries a count twice
        unreported, self.reported = counters - self.reported, counters
        return call.parsed.to_bytes(), call.timings_ms, call.from_store, unreported


class DressReplica(Replica):
    load_jppnet = False

    def __init__(self, args: ServeArgs):
        from ray import serve

        super().__init__(args)
        self._batched = serve.batch(max_batch_size=DRESS_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)(self._dress_batch)

    async def dress(self, person: bytes, garments: list, options, image_format: str) -> list:
        """Per garment, in order: (result, image as image_format) or the TryonError refusing it alone."""
        outcome = await self._batched((person, garments, options, image_format))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _dress_batch(self, calls: list) -> list:
        return await asyncio.to_thread(self._run, self._dress_all, calls)

    def _dress_all(self, calls: list) -> list:
        """Each call's garments' outcomes (as `dress` answers them), or the error that refuses
        the call alone (a person's bytes it cannot read); GMM and TOM run over every call's
        garments together (per DressOptions), a garment that does not decode refused alone."""
        outcomes, groups = [], {}
        for index, (person, garments, options, _) in enumerate(calls):
            try:
                parsed = ParsedPerson.from_bytes(person)
            except TryonError as exc:
                outcomes.append(exc)
                continue
            outcomes.append([])
            groups.setdefault(options, []).extend((index, parsed, garment) for garment in garments)
        for options, items in groups.items():
            dressed = self.pipeline.dress_pairs([(parsed, garment) for _, parsed, garment in items], options)
            for (index, _, _), outcome in zip(items, dressed):
                outcomes[index].append(outcome)
        return [its if isinstance(its, TryonError) else encoded(its, image_format)
                for its, (_, _, _, image_format) in zip(outcomes, calls)]


class Ingress:
    """The app of `tryon serve`, as the local engine wraps it (API keys, access log, /metrics,
    /readyz), built on the replica once it holds the two handles. `keys` arrive pickled in the
    deployment's init arguments: never in a Serve config, nor in Serve's logs."""

    def __init__(self, parse, dress, args: ServeArgs, gallery: Gallery, keys: ApiKeys):
        self.parse, self.dress, self.args, self.gallery, self.keys = parse, dress, args, gallery, keys
        # The access log (tryon.access) and the service's other lines go to this replica's Serve log
        # (logs/serve/replica_<app>_Ingress_<id>.log), in its deployment's encoding.
        ours = logging.getLogger("tryon")
        ours.handlers, ours.propagate = list(logging.getLogger("ray.serve").handlers), False
        ours.setLevel(logging.INFO)

    async def __serve_build_asgi_app__(self):
        facts = await asyncio.gather(self.parse.describe.remote(), self.dress.describe.remote())
        inference = ServeInference(self.parse, self.dress, self.args, facts)
        app = create_app(inference, gallery=self.gallery, limits=self.args.limits(),
                         allowed_hosts=self.args.allowed_hosts, allowed_origins=self.args.allowed_origins)
        return Operations(with_deployments_health(app), self.keys, answer_id=False)


class DeploymentHealth(BaseModel):
    status: str = Field(description="Serve's: HEALTHY; UNHEALTHY while a lost replica is replaced; UPDATING, "
                                    "UPSCALING, DOWNSCALING, DEPLOY_FAILED")
    running: int = Field(description="replicas answering")
    replicas: dict[str, int] = Field(description="replicas in each of Serve's states (RUNNING, STARTING, ...)")
    message: str


class RayHealthAnswer(HealthAnswer):
    deployments: dict[str, DeploymentHealth] = Field(description="Ingress, Parse and Dress as Serve reports them")


def with_deployments_health(app):
    """/healthz on Ray, ahead of the local engine's (out of the API docs, which show that one): its
    answer and each deployment's replicas; status "degraded" while one lacks a replica (still a 200:
    this Ingress lives, and requests get 503s meanwhile)."""
    @app.get("/healthz", include_in_schema=False, response_model=RayHealthAnswer)
    async def healthz(request: Request) -> dict:
        deployments = await asyncio.to_thread(_deployments_health)
        steady = all(deployment["status"] in STEADY for deployment in deployments.values())
        return {**await local_healthz(request), "status": "ok" if steady else "degraded", "deployments": deployments}

    app.router.routes.insert(0, app.router.routes.pop())  # the first route that matches answers
    return app


def _deployments_health() -> dict:
    from ray import serve

    def word(state) -> str:  # Serve gives its enums, or their values as text
        return getattr(state, "value", state)

    status = serve.status().applications[serve.get_replica_context().app_name]
    return {name: {"status": word(deployment.status), "running": deployment.replica_states.get("RUNNING", 0),
                   "replicas": {word(state): count for state, count in deployment.replica_states.items()},
                   "message": deployment.message} for name, deployment in status.deployments.items()}


class ServeInference(Inference):
    def __init__(self, parse, dress, args: ServeArgs, facts: list[dict]):
        self.handles = {"parse": parse, "dress": dress}
        self.store = args.pipeline.store.open()
        self.limits = {"parse": args.max_concurrent, "dress": DRESS_BATCH}
        self.queue = args.queue
        self.in_flight = 0
        self._seconds = {"parse": 1.0, "dress": 1.0}  # a recent call's duration, for Retry-After
        parse_facts, dress_facts = facts
        self._facts = {**dress_facts, **parse_facts, "synthetic": parse_facts["synthetic"] or dress_facts["synthetic"],
                       "providers": list(dict.fromkeys(parse_facts["providers"] + dress_facts["providers"]))}

    async def parse(self, request, photo, options):
        data, timings, from_store, counts = await self._call("parse", photo, options)
        for name, count in counts.items():  # the Parse replica's lookups, counted here for /metrics
            self.store.count(name, count)
        return ParseCall(ParsedPerson.from_bytes(data), timings, from_store)

    async def dress(self, request, parsed, garments, options, image_format):
        return await self._call("dress", parsed.to_bytes(), garments, options, image_format)

    async def _call(self, step: str, *args):
        """A deployment's answer; its refusals as the local engine gives them."""
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        self.in_flight += 1
        start = time.perf_counter()
        try:
            answer = await getattr(self.handles[step], step).remote(*args)
        except BackPressureError:
            raise Overloaded(self._retry_after(step), self.in_flight) from None
        except RayTaskError as exc:  # the replica's own error: an input it refuses, or a failure
            if isinstance(exc.cause, TryonError):  # its class kept, so the answer is its status
                raise exc.cause from None
            raise RuntimeError(f"the {step} deployment failed: {type(exc.cause).__name__}: {exc.cause}") from None
        except (RayActorError, DeploymentUnavailableError):
            raise Unavailable(f"the {step} deployment lost its replica; retry in a moment (Serve starts "
                              "another)", retry_after=self._retry_after(step)) from None
        finally:
            self.in_flight -= 1
        self._seconds[step] = time.perf_counter() - start
        return answer

    def _retry_after(self, step: str) -> int:
        return retry_after(self._seconds[step], self.limits[step], self.queue)  # one replica's queue

    def load(self):
        return {"max_concurrent": self.limits["parse"], "queue": self.queue, "in_flight": self.in_flight}


def build(args: ServeArgs, gallery: Gallery | None = None, keys: ApiKeys = ApiKeys()):
    """The Serve application: Ingress over Parse (autoscaled) and Dress; `gallery`: the
    garments of args.gallery, when the caller has loaded them already."""
    serve = import_ray("serve").serve
    args = dataclasses.replace(args, model_hashes=model_hashes(args.pipeline.models, args.pipeline.precision))
    logs = {"encoding": "JSON" if args.log_format == "json" else "TEXT"}
    replica = dict(ray_actor_options={"num_cpus": args.cpus_per_replica}, max_queued_requests=args.queue,
                   logging_config=logs,
                   max_constructor_retry_count=3)  # a replica that cannot start will not by retrying for long
    low, high = args.parse_replicas
    scaling = dict(num_replicas=low) if low == high else dict(autoscaling_config={
        "min_replicas": low, "max_replicas": high, "target_ongoing_requests": args.max_concurrent,
        "upscale_delay_s": args.upscale_delay_s, "downscale_delay_s": 300})
    parse = serve.deployment(ParseReplica, name="Parse", max_ongoing_requests=args.max_concurrent, **scaling,
                             **replica)
    # Calls for one Dress batch arrive together, and Serve's router counts them as queued while it
    # picks a replica: a queue shorter than a batch would refuse a burst the replicas can take.
    dress = serve.deployment(DressReplica, name="Dress", num_replicas=args.dress_replicas,
                             max_ongoing_requests=DRESS_BATCH,
                             **{**replica, "max_queued_requests": max(args.queue, DRESS_BATCH)})
    ingress = serve.deployment(serve.ingress()(Ingress), name="Ingress", ray_actor_options={"num_cpus": 0},
                               max_ongoing_requests=args.max_connections, max_constructor_retry_count=3,
                               logging_config=logs)
    gallery = Gallery.load(args.gallery) if gallery is None else gallery
    return ingress.bind(parse.bind(args), dress.bind(args), args, gallery, keys)


def app(args: dict):
    """The builder a Serve config names (`import_path: tryon.serve.ray_engine:app`); API keys from
    `api_keys_file` (a mounted secret) and TRYON_API_KEYS where the builder runs, never the config."""
    args = dict(args)
    keys = ApiKeys.gather(file=args.pop("api_keys_file", None), env=os.environ.get(ENV))
    return build(ServeArgs(**args), keys=keys)


@contextmanager
def running(args: ServeArgs, host: str, port: int, keep_alive_s: float = 5, address: str | None = None,
            start_timeout_s: float = 600, gallery: Gallery | None = None, keys: ApiKeys = ApiKeys()):
    """The service deployed on Ray Serve while the block runs, on the cluster `joined_cluster`
    gives; Serve's proxies listen on host:port unless Serve was already running there."""
    ray = import_ray("serve")
    from ray import serve

    with joined_cluster(ray, address, logging_level=logging.ERROR, log_to_driver=False) as own_cluster:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        try:
            if own_cluster:
                _check_cpus(ray, args)
            serve.start(http_options={"host": host, "port": port,
                                      "keep_alive_timeout_s": max(1, round(keep_alive_s))})
            serve.run_many([serve.RunTarget(build(args, gallery, keys), name=APP, route_prefix="/")],
                           wait_for_applications_running=False)
            _wait_running(serve, start_timeout_s)
            yield
        finally:
            if not own_cluster:  # a cluster others may use: only this app goes (else the cluster goes)
                serve.delete(APP)


def _check_cpus(ray, args: ServeArgs):
    most = args.parse_replicas[1]
    check_cpus(ray, (most + args.dress_replicas) * args.cpus_per_replica,
               f"{most} parse and {args.dress_replicas} dress replicas of {args.cpus_per_replica:g} CPUs each",
               "--parse-replicas, --dress-replicas, --cpus-per-replica", where="this machine")


def _wait_running(serve, timeout_s: float):
    """Until every deployment runs; a deployment that cannot start ends it with its reason."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP)
        state = str(status.status) if status else "NOT_STARTED"
        if state.endswith("RUNNING"):
            return
        deployments = status.deployments.items() if status else ()
        if state.endswith("DEPLOY_FAILED"):
            message = "\n".join(d.message for _, d in deployments if d.message) or status.message
            raise tryon_cause(message, "replica") or RuntimeSetupError(
                f"the Serve deployments did not start: {_first_line(message)}")
        if time.monotonic() > deadline:
            waiting = "; ".join(f"{name}: {_first_line(d.message) or d.status}" for name, d in deployments)
            raise RuntimeSetupError(f"the Serve deployments did not start within {timeout_s:g} s ({waiting})")
        time.sleep(0.5)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
