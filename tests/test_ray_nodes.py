"""The catalogue and the service on a Ray cluster of several nodes on this machine (Ray's
multi-node test cluster: a head that drives and writes, with no CPUs, and two workers of 1 and 2
CPUs), with one real redis-server as the person store the nodes share; faults in the middle of a
catalogue: a worker's process killed, a worker node removed, the head lost. Each run's images are
the local engine's bytes and its ledger has every pair once."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'tryon-onnx[ray]'")

from shared_data import viton_dir  # noqa: E402
from test_catalogue import FAST, catalogue, images, make_inputs  # noqa: E402
from tryon.catalogue import ray_engine  # noqa: E402
from tryon.catalogue.ledger import Ledger, record  # noqa: E402
from tryon.catalogue.plan import LEDGER, Catalogue, Settings  # noqa: E402
from tryon.catalogue.work import render_local  # noqa: E402
from tryon.images import decode  # noqa: E402
from tryon.options import ParseOptions  # noqa: E402
from tryon.store import StoreSettings  # noqa: E402

WORKERS = (1, 2)  # CPUs of the two worker nodes; the head has none


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for cpus in WORKERS:
        cluster.add_node(num_cpus=cpus)
    ray.init(address=cluster.address, include_dashboard=False, logging_level="WARNING")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture()
def inputs(tmp_path):
    return make_inputs(tmp_path)


@pytest.fixture()
def store(redis_server):
    redis_server.flush()
    return StoreSettings(redis_server.url)


def settings(models, store=None) -> Settings:
    return Settings(str(models), "cpu", scales=(1.0,), mirror=False, store=store, parse=ParseOptions(need_pre=False))


def render(plan: Catalogue, pairs, engine: str = "ray"):
    """Writes what `pairs` yields into plan.out as the CLI does."""
    with Ledger(plan.out) as ledger:
        for person, garment, outcome in pairs:
            record(plan, ledger, person, garment, outcome, {}, engine)


def assert_as_local(plan: Catalogue, local: Path):
    lines = (plan.out / LEDGER).read_text().splitlines()
    assert len(lines) == len(plan.pairs) == len(Ledger(plan.out).read()), "a pair in the ledger twice or missing"
    rendered = images(plan.out)
    assert rendered == images(local) and len(rendered) == sum(p.garment.path.name != "torn.png" for p in plan.pairs)
    assert all(decode(png).shape == (256, 192, 3) for png in rendered.values())  # none torn
    assert not list(plan.out.rglob("*.partial"))


@pytest.fixture()
def local(tiny_models_dir, inputs, tmp_path):
    persons, garments = inputs
    plan = Catalogue.plan(persons, garments, tmp_path / "local")
    ours = settings(tiny_models_dir)
    render(plan, render_local(ours.build(), plan.batches(), ours), "local")
    return plan.out


def test_the_catalogue_on_two_worker_nodes_gives_the_local_bytes(cluster, tiny_models_dir, inputs, local, store,
                                                                  tmp_path):
    import redis

    persons, garments = inputs
    done = catalogue(persons, garments, "-o", tmp_path / "ray", "--models", tiny_models_dir,
                     *[flag for flag in FAST if flag != "--no-cache"], "--cache", store.location, "--engine", "ray")
    assert done.exit_code == 1, done.output  # the torn garment, as locally
    assert ("Ray: 1 worker of 1 CPUs and 1 threads, 1 worker of 2 CPUs and 2 threads on 2 node(s) of 1, 2 CPUs"
            in done.output), done.output
    assert_as_local(Catalogue.plan(persons, garments, tmp_path / "ray"), local)
    assert redis.Redis.from_url(store.location).dbsize() == 2  # each person, parsed on a worker, kept in Redis


class Gate:
    """Mixed into the Worker class by the tests: it does its first call of `step` (parse or dress),
    then before the next writes where it runs ('PID NODE_ID') to `waiting` and holds until
    `release` exists (60 s at most). A worker started in a lost one's place handles the retried
    call as its first."""
    step: str = ""
    waiting: str = ""
    release: str = ""

    def parse(self, photo):
        return self._gated("parse", super().parse, photo)

    def dress(self, *args):
        return self._gated("dress", super().dress, *args)

    def _gated(self, step, call, *args):
        if self.step in (step, "any") and getattr(self, "called", False):
            mine = f"{self.waiting}.{os.getpid()}"
            Path(mine).write_text(f"{os.getpid()} {ray.get_runtime_context().get_node_id()}")
            os.replace(mine, self.waiting)
            deadline = time.monotonic() + 60
            while not Path(self.release).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.called = getattr(self, "called", False) or self.step in (step, "any")
        return call(*args)


def render_with_fault(plan, ours, step: str, fault, tmp_path, monkeypatch, places=ray_engine.given_workers(1, 0.5)):
    """Renders the plan on `places` (by default one worker of half a CPU, which either worker node
    can hold; None: the rule's), each worker gated at its second call of `step` (parse, dress or
    any), and `fault(pid, node_id)` applied to the first gated while it holds that call; returns
    what the gate wrote."""
    from ray import cloudpickle

    waiting, release = tmp_path / "waiting", tmp_path / "release"
    gated = type("GatedWorker", (Gate, ray_engine.Worker), {"step": step, "waiting": str(waiting),
                                                            "release": str(release)})
    monkeypatch.setattr(ray_engine, "Worker", gated)
    found = []

    def inject():
        deadline = time.monotonic() + 120
        while not waiting.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if waiting.exists():
            found.append(waiting.read_text())
            fault(*found[0].split())
        release.touch()

    injector = threading.Thread(target=inject, daemon=True)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    try:
        injector.start()
        render(plan, ray_engine.render_ray(ours, plan.batches(), places))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        release.touch()
        injector.join(10)
    assert found, f"the worker never made a second {step} call"
    return found[0]


@pytest.mark.parametrize("step", ["parse", "dress"])
def test_a_worker_killed_mid_catalogue_is_replaced_and_the_run_finishes(cluster, tiny_models_dir, inputs, local,
                                                                        store, tmp_path, monkeypatch, step):
    persons, garments = inputs
    plan = Catalogue.plan(persons, garments, tmp_path / "ray")
    where = render_with_fault(plan, settings(tiny_models_dir, store), step,
                              lambda pid, node: os.kill(int(pid), signal.SIGKILL), tmp_path, monkeypatch)
    with pytest.raises(ProcessLookupError):
        os.kill(int(where.split()[0]), 0)  # it was killed
    assert_as_local(plan, local)


@pytest.mark.parametrize("workers", ["given", "rule"])
def test_a_worker_node_removed_mid_catalogue_and_the_run_finishes_on_the_other(cluster, tiny_models_dir, inputs,
                                                                               local, store, tmp_path, monkeypatch,
                                                                               workers):
    """given: one worker of half a CPU, started again on the other node; rule: one worker pinned
    to each node, the lost one's work done by the other."""
    persons, garments = inputs
    plan = Catalogue.plan(persons, garments, tmp_path / "ray")
    removed = []

    def remove(pid, node_id):
        [node] = [node for node in cluster.worker_nodes if node.node_id == node_id]
        [cpus] = [n["Resources"]["CPU"] for n in ray.nodes() if n["NodeID"] == node_id]
        cluster.remove_node(node, allow_graceful=False)
        removed.append(int(cpus))

    try:
        render_with_fault(plan, settings(tiny_models_dir, store), "dress" if workers == "given" else "any", remove,
                          tmp_path, monkeypatch, None if workers == "rule" else ray_engine.given_workers(1, 0.5))
        assert removed
        deadline = time.monotonic() + 60  # the run may end before Ray has missed the node's heartbeats
        while len(ray_engine._live_nodes(ray)) != 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(ray_engine._live_nodes(ray)) == 1
        assert_as_local(plan, local)
    finally:
        for cpus in removed:  # the next test has both worker nodes again
            cluster.add_node(num_cpus=cpus)


def test_the_service_on_two_worker_nodes_answers_the_local_bytes(cluster, tiny_models_dir, store):
    """tryon serve's Ray Serve app on the same cluster: Parse and Dress replicas on both worker
    nodes, persons shared through Redis, every answer the local engine's bytes."""
    import httpx
    import numpy as np
    from ray.util.state import list_actors
    from serve_process import free_port
    from test_serve_persons import photo
    from tryon.examples import EXAMPLE_GARMENT
    from tryon.pipeline import PipelineSettings, TryOn
    from tryon.serve.ray_engine import ServeArgs, running

    pipeline = PipelineSettings(str(tiny_models_dir), "cpu", scales=(1.0,), mirror=False, store=store)
    args = ServeArgs(pipeline, parse_replicas=(2, 2), dress_replicas=2, cpus_per_replica=0.5)
    local = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)
    cloth = EXAMPLE_GARMENT.read_bytes()
    port = free_port()
    with running(args, "127.0.0.1", port, start_timeout_s=240), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        replicas = [actor for actor in list_actors(filters=[("state", "=", "ALIVE")])
                    if actor.class_name.startswith("ServeReplica:") and actor.class_name.split(":")[-1] in
                    ("Parse", "Dress")]
        assert len(replicas) == 4 and len({actor.node_id for actor in replicas}) == 2, replicas
        for k in range(4):  # a photo parsed on whichever Parse replica, dressed by id on whichever Dress one
            created = client.post("/v1/persons", files={"person": ("p.png", photo(20 + k))},
                                  data={"need_pre": "false"})
            assert created.status_code == 201, created.text
            dressed = client.post("/v1/tryon", data={"person_id": created.json()["person_id"]},
                                  files={"cloth": ("c.jpg", cloth)})
            assert dressed.status_code == 200, dressed.text
            expected = local.dress(local.parse(photo(20 + k), need_pre=False), cloth)[0].image
            assert np.array_equal(decode(dressed.content), expected)
    assert redis_persons(store) == 4  # each kept in the Redis every node shares


def redis_persons(store: StoreSettings) -> int:
    import redis

    return redis.Redis.from_url(store.location).dbsize()


# A Ray cluster of its own in a process (and process group) of its own, so that this one stays out
# of it: one head node with a CPU, killed without warning when a line comes on stdin.
HEAD = """
import sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
print(cluster.address, flush=True)
sys.stdin.readline()
cluster.remove_node(cluster.head_node, allow_graceful=False)
cluster.shutdown()
"""


def test_the_head_lost_mid_catalogue_is_one_line_and_the_rerun_renders_the_rest(tiny_models_dir, inputs, tmp_path):
    """The command, as a user runs it, against a cluster whose head dies once the first person's
    pairs are in the ledger (before the fix: exit 1 without a word, or a minute's wait for the
    head), then the same command on a new cluster."""
    from test_cli import TRYON

    persons, garments = inputs
    (garments / "torn.png").unlink()  # a failed pair is tried again: here every pair is rendered once
    for photo in sorted((viton_dir() / "person").glob("*.jpg"))[2:4]:  # 4 persons: work left when the head goes
        shutil.copy(photo, persons)
    plan, local = (Catalogue.plan(persons, garments, tmp_path / name) for name in ("ray", "local"))
    render(local, render_local(settings(tiny_models_dir).build(), local.batches(), settings(tiny_models_dir)), "local")

    def on_a_new_cluster(lose_it: bool) -> subprocess.CompletedProcess:
        """The command; lose_it: the head killed once a person's 3 pairs are in the ledger."""
        head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        before = len(Ledger(plan.out).read())
        command = subprocess.Popen([TRYON, "catalogue", persons, garments, "-o", plan.out, "--models",
                                    tiny_models_dir, *FAST, "--engine", "ray", "--address",
                                    head.stdout.readline().strip()], stderr=subprocess.PIPE, text=True)
        try:
            while lose_it and command.poll() is None and len(Ledger(plan.out).read()) < before + 3:
                time.sleep(0.02)
            head.stdin.write("lose it\n" if lose_it else "")
            head.stdin.flush()
            return subprocess.CompletedProcess(command.args, command.wait(60), "", command.stderr.read())
        finally:
            command.kill()  # one that hangs (the fault this is about) is not left running
            head.stdin.close()  # the word to stop the cluster, if it is still up, and exit
            head.wait(60)
            with contextlib.suppress(ProcessLookupError):  # the agents a raylet killed outright leaves behind
                os.killpg(head.pid, signal.SIGKILL)

    lost = on_a_new_cluster(lose_it=True)
    kept = Ledger(plan.out).read().values()
    assert lost.returncode == 5, lost.stderr  # Unavailable's exit code
    assert 3 <= len(kept) < len(plan.pairs), "the run ended before the head was lost"
    [line] = [line for line in lost.stderr.splitlines() if line.startswith("error:")]
    assert (f"lost the Ray cluster at {lost.args[-1]} after {len(kept)} pairs" in line
            and "run the same command again, on a new cluster or with --engine local, to render the rest" in line)
    assert "Traceback" not in lost.stderr
    written = images(plan.out)
    assert len(written) == len(kept) and {line["status"] for line in kept} <= {"ok", "low_confidence"}
    assert written == {k: v for k, v in images(local.out).items() if k in written}  # the local bytes: none torn
    assert not list(plan.out.rglob("*.partial"))

    again = on_a_new_cluster(lose_it=False)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} done before, {len(plan.pairs) - len(kept)} to render (ray engine)" in again.stderr
    assert_as_local(plan, local.out)


def test_an_address_where_no_cluster_answers_is_one_line(tiny_models_dir, inputs, tmp_path):
    """Before: Ray's driver tried to reach it for ever, a warning every few seconds."""
    from serve_process import free_port
    from test_cli import tryon

    persons, garments = inputs
    done = tryon("catalogue", persons, garments, "-o", tmp_path / "out", "--models", tiny_models_dir, *FAST,
                 "--engine", "ray", "--address", f"127.0.0.1:{free_port()}", timeout=60)
    assert done.returncode == 5 and "error: no Ray cluster answers at 127.0.0.1:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_ctrl_c_mid_catalogue_stops_the_cluster_the_command_started(tiny_models_dir, inputs, tmp_path):
    """Ctrl-C reaches the command alone (its driver child is in a process group of its own), which
    stops the child so that it shuts down the cluster it started: exit 130, no traceback, the
    finished pairs kept whole, and no process of that cluster left."""
    import tempfile

    from test_cli import TRYON

    persons, garments = inputs
    for photo in sorted((viton_dir() / "person").glob("*.jpg"))[2:4]:
        shutil.copy(photo, persons)
    out, ray_tmp = tmp_path / "out", tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths
    command = subprocess.Popen([TRYON, "catalogue", persons, garments, "-o", out, "--models", tiny_models_dir,
                                *FAST, "--engine", "ray"], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RAY_TMPDIR": ray_tmp})
    try:
        deadline = time.monotonic() + 120
        while command.poll() is None and not Ledger(out).read() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert command.poll() is None, "the run ended before the Ctrl-C"
        command.send_signal(signal.SIGINT)
        assert command.wait(60) == 130, command.stderr.read()
    finally:
        command.kill()
    assert "Traceback" not in command.stderr.read()
    assert all(decode(png).shape == (256, 192, 3) for png in images(out).values())
    assert not list(out.rglob("*.partial"))
    deadline = time.monotonic() + 15  # the cluster's last processes take a moment to end
    while (left := processes_with_files_in(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for entry in left:  # not left running for the tests after this one
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry.split()[0]), signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, f"processes of the command's cluster still running: {left}"


def processes_with_files_in(folder: str) -> list[str]:
    """Processes holding a file under `folder` open: a Ray cluster's, by its temp dir (its agents
    rename themselves, ray::DashboardAgent, so their command lines do not name it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(folder) for fd in os.listdir(f"/proc/{pid}/fd")):
                found.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_text().replace(chr(0), ' ')[:80]}")
    return found
