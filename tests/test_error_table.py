"""One error table: every TryonError class carries its exit code and HTTP status, and the CLI's
`friendly` and the service's one handler answer with them, also for errors relayed from Ray."""
import importlib
import pickle
import pkgutil
from pathlib import Path

import pytest
import tryon
import typer
from tryon.cli.errors import friendly
from tryon.errors import TryonError
from typer.testing import CliRunner

MESSAGE = "what was wrong, and what is accepted"


def _import_everything() -> None:
    root = Path(tryon.__file__).parent
    for module in pkgutil.walk_packages([str(root)], "tryon."):
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional extra (serve) not installed: its classes cannot be raised either
            pass
    for name in ("tryon.export.errors", "tryon.export.sources"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _subclasses(kind: type) -> list[type]:
    found = []
    for sub in kind.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def every_error_class() -> list[type]:
    """TryonError and every subclass the project defines (not Ray's `RayTaskError(<class>)`
    duals nor tests' classes)."""
    _import_everything()
    classes = [TryonError] + [kind for kind in _subclasses(TryonError) if kind.__module__.startswith("tryon.")]
    return sorted(set(classes), key=lambda kind: f"{kind.__module__}.{kind.__qualname__}")


CLASSES = every_error_class()
IDS = [kind.__qualname__ for kind in CLASSES]


def make(kind: type) -> TryonError:
    from tryon.serve.limits import Overloaded

    if issubclass(kind, Overloaded):
        return kind(7, 3)
    return kind(MESSAGE)


def by_name(name: str) -> type:
    return next(kind for kind in CLASSES if kind.__name__ == name)


def test_the_walk_finds_the_service_and_the_export_errors():
    names = {kind.__name__ for kind in CLASSES}
    assert {"TryonError", "InputError", "ImageError", "UnsupportedFormat", "TooManyPixels", "NotFound", "BadRequest",
            "StoreUnavailable", "Overloaded", "ClientGone", "ModelsMissingError", "ModelMismatchError",
            "RuntimeSetupError", "CannotFrame", "StoredPersonError", "CannotListen", "RayMissingError",
            "BodyTooLarge", "UploadStalled"} <= names
    if importlib.util.find_spec("tryon.export") is not None:
        assert {"CheckpointError", "ExportValidationError", "SourcesMissingError"} <= names


@pytest.mark.parametrize("kind", CLASSES, ids=IDS)
def test_each_class_says_its_exit_code_and_http_status_itself(kind):
    assert "exit_code" in vars(kind) and "http_status" in vars(kind), f"{kind.__qualname__} inherits its codes"
    assert type(kind.exit_code) is int and 1 <= kind.exit_code <= 9
    assert type(kind.http_status) is int and 400 <= kind.http_status <= 599 and kind.http_status != 500


def test_the_documented_codes():
    """README "Exit codes" and the statuses the service has always given."""
    expected = {"ModelsMissingError": 3, "ModelMismatchError": 3, "InputError": 4, "ImageError": 4,
                "RuntimeSetupError": 5, "RayMissingError": 5, "CannotListen": 8, "TryonError": 1}
    if importlib.util.find_spec("tryon.export") is not None:
        expected.update(CheckpointError=6, SourcesMissingError=6, ExportValidationError=7)
    assert {name: by_name(name).exit_code for name in expected} == expected
    statuses = {"UnsupportedFormat": 415, "TooManyPixels": 413, "BodyTooLarge": 413, "UploadStalled": 408,
                "ImageError": 422, "InputError": 422, "NotFound": 404, "BadRequest": 400, "NotJSON": 400,
                "BadField": 422, "Overloaded": 503, "StoreUnavailable": 503, "ClientGone": 499}
    assert {name: by_name(name).http_status for name in statuses} == statuses


@pytest.mark.parametrize("kind", CLASSES, ids=IDS)
def test_the_cli_exits_with_the_class_code_and_one_line(kind):
    error = make(kind)

    def command():
        raise error

    app = typer.Typer()
    app.command()(friendly(command))
    done = CliRunner().invoke(app, [])
    assert done.exit_code == kind.exit_code
    assert done.stderr == f"error: {error}\n"
    assert "Traceback" not in done.output
    assert isinstance(done.exception, SystemExit)


def _service(error: Exception):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from tryon.serve import errors

    app = FastAPI()
    errors.install(app)

    @app.get("/fail")
    async def fail():
        raise error

    return TestClient(app, raise_server_exceptions=True).get("/fail")


@pytest.mark.parametrize("kind", CLASSES, ids=IDS)
def test_the_service_answers_the_class_status_and_detail(kind):
    error = make(kind)
    answer = _service(error)
    assert answer.status_code == kind.http_status
    assert answer.json() == {"detail": str(error)}
    for name, value in (error.headers or {}).items():
        assert answer.headers[name] == value


def test_overloaded_and_the_store_say_when_to_retry():
    from tryon.errors import StoreUnavailable, Unavailable
    from tryon.serve.limits import Overloaded

    busy = _service(Overloaded(7, 3))
    assert busy.status_code == 503 and busy.headers["retry-after"] == "7" and "busy: 3 requests" in busy.text
    assert _service(StoreUnavailable("no store", retry_after=5)).headers["retry-after"] == "5"
    assert "retry-after" not in _service(Unavailable("no replica")).headers


def test_the_upload_errors_close_the_connection():
    from tryon.serve.limits import body_too_large

    answer = _service(body_too_large(1024, 4096))
    assert answer.status_code == 413 and answer.headers["connection"] == "close"
    assert answer.json() == {"detail": "the request body (4,096 bytes) is over the limit of 1,024 bytes "
                                       "(0.000976562 MB)"}


@pytest.mark.parametrize("kind", CLASSES, ids=IDS)
def test_each_error_survives_pickling_as_ray_relays_it(kind):
    error = make(kind)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is kind and str(again) == str(error) and again.headers == error.headers


def _ray_task_error(cause: Exception, through_object_store: bool = True):
    """What a caller of a replica that raised `cause` gets: Ray pickles the RayTaskError into the
    object store and raises it as `RayTaskError(<cause's class>)`."""
    exceptions = pytest.importorskip("ray.exceptions")
    error = exceptions.RayTaskError("DressReplica.dress", "Traceback (most recent call last):\n  ...\n"
                                    f"{type(cause).__module__}.{type(cause).__name__}: {cause}", cause,
                                    proctitle="ray::ServeReplica", pid=1, ip="127.0.0.1")
    if through_object_store:
        error = pickle.loads(pickle.dumps(error))
    return error.as_instanceof_cause()


@pytest.mark.parametrize("name", ["CannotFrame", "UnsupportedFormat", "NotFound", "StoredPersonError",
                                  "ModelMismatchError", "Overloaded"])
def test_an_error_relayed_through_ray_keeps_its_class_and_status(name):
    kind = by_name(name)
    cause = make(kind)
    relayed = _ray_task_error(cause)
    assert isinstance(relayed, kind) and type(relayed.cause) is kind and str(relayed.cause) == str(cause)
    assert relayed.cause.headers == cause.headers
    # Ray's own form (its text is Ray's traceback): what the Ingress would get if it did not unwrap it.
    answer = _service(relayed)
    assert answer.status_code == kind.http_status and answer.json() == {"detail": str(cause)}


def test_the_ray_ingress_raises_the_replicas_own_error():
    """ServeInference._call: the replica's error, not Ray's, so the handler answers its status."""
    pytest.importorskip("ray.serve")
    import asyncio

    from tryon.serve.ray_engine import ServeInference
    from tryon.stages.person_crop import CannotFrame

    relayed = _ray_task_error(CannotFrame("the pose frames only 3x4 pixels: no person found"))

    class Method:
        async def remote(self, *args):
            raise relayed

    inference = ServeInference.__new__(ServeInference)
    inference.handles = {"parse": type("Handle", (), {"parse": Method()})()}
    inference.in_flight, inference.limits, inference.queue = 0, {"parse": 1}, 1
    inference._seconds = {"parse": 1.0}
    with pytest.raises(CannotFrame) as refused:
        asyncio.run(inference._call("parse", b"photo"))
    assert type(refused.value) is CannotFrame and refused.value.http_status == 422
    assert str(refused.value) == "the pose frames only 3x4 pixels: no person found"


def test_a_tryon_error_in_a_ray_errors_text_is_made_again_with_its_class():
    from tryon.ray_cluster import tryon_cause
    from tryon.stages.person_crop import CannotFrame

    text = ("ray::ServeReplica:tryon:Dress.initialize_and_get_metadata()\n  File \"x.py\", line 1\n"
            "tryon.stages.person_crop.CannotFrame: no person found")
    found = tryon_cause(text, "replica")
    assert type(found) is CannotFrame and str(found) == "on a Ray replica: no person found"
    assert tryon_cause("tryon.serve.limits.Overloaded: busy", "replica") is None  # not made from a message
