"""TryOn: a person photo and a garment photo in, the person wearing the garment out.

Two steps, because JPP-Net (98% of the time) never sees the garment: `parse` (decode,
brightness, JPP-Net, crop, crossed arms; found by content hash in the person store when
parsed before) and `dress` (GMM and TOM over the garments in batches, keep_back).
`predict` is the seed's one-call form and gives the same bytes.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from .errors import InputError, TryonError
from .images import load_rgb
from .models.graphs import open_jppnet
from .models.model_dir import ModelDir
from .models.session import PROVIDERS, SessionOptions, providers_in_use, resolve_providers
from .options import DressOptions, ParseOptions, split_flags
from .parsed_person import SEED_FAILURE_CONFIDENCE, ParseCall, ParsedPerson, given_parse_key, person_id
from .stages import brightness
from .stages.cpvton import CpvtonStage
from .stages.keep_background import keep_background
from .stages.keypoints import crossed_arms
from .stages.parse import BASE_SIZE, ParseStage
from .stages.person_crop import CannotFrame, crop_person, pose_box, resize_person
from .store import PersonStore, StoreSettings
from .timing import Timer

# GMM and TOM run over at most this many garments at once: per-garment cost is flat from
# here on, and memory stays bounded however many garments a person is dressed in.
DRESS_BATCH = 8
# A preview parse (`parse(preview=True)`): JPP-Net on one square of this side, without the
# mirror, int8 where the models folder has it: the cheapest setting measured whose labels and
# keypoints stay usable (288 against 384 on the VITON photos: README, "First look").
PREVIEW_SIDE = 288


@dataclass(frozen=True)
class PipelineSettings:
    """Which models, how to run them and where parsed persons are kept: the one way a TryOn
    is configured (typed and picklable; the benchmarks' and the catalogue's settings extend it)."""
    models: str = "models_onnx"
    provider: str = "auto"
    threads: int = 0
    scales: tuple[float, ...] = (1.0, 0.75, 1.25)
    mirror: bool = True
    precision: str = "fp32"
    store: StoreSettings | None = None  # None: no person store

    def build(self, threads: int | None = None, load_jppnet: bool = True,
              store: PersonStore | None = None) -> "TryOn":
        """load_jppnet=False: a pipeline that only dresses persons parsed elsewhere (a dress
        replica), without JPP-Net's memory; `store`: an open store instead of opening `self.store`."""
        models = ModelDir.open(self.models)
        options = SessionOptions(provider=self.provider, threads=self.threads if threads is None else threads)
        graph, parse_stage = "jppnet", None
        if load_jppnet:
            graph, jppnet = open_jppnet(models, options, self.precision)
            parse_stage = ParseStage(jppnet, self.scales, self.mirror)
        if store is None and self.store is not None:
            store = self.store.open()
        return TryOn(parse_stage, CpvtonStage.from_dir(self.models, options), models, graph, store,
                     partial(_preview_session, models, options, graph))


def _preview_session(models: ModelDir, options: SessionOptions, graph: str, exact_session):
    """The preview's JPP-Net: the int8 graph on the CPU where `tryon quantize` wrote one, else the exact one's."""
    if graph != "jppnet_int8" and models.has("jppnet_int8") and resolve_providers(options.provider) == PROVIDERS["cpu"]:
        return open_jppnet(models, options, "int8")[1]
    return exact_session


@dataclass(frozen=True)
class StageGraph:
    """What runs one stage; `providers`: what its session runs on, not those asked for."""
    graph: str | None
    file: str | None
    precision: str
    providers: list[str]


@dataclass
class TryOnResult:
    image: np.ndarray  # 256x192x3 uint8 RGB: the try-on, or the framed photo when refused
    confidence: float  # 0 when a hard exclusion fired (no person, crossed arms)
    timings_ms: dict[str, float]
    reason: str = ""  # why confidence is 0, when it is
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.confidence >= SEED_FAILURE_CONFIDENCE


# What `TryOn.dress` gives for each garment, in order: the person wearing it, or the error that
# refused that garment alone (`isinstance(outcome, TryonError)`); one bad garment spoils no other.
GarmentOutcome = TryOnResult | TryonError


class TryOn:
    def __init__(self, parse_stage: ParseStage | None, cpvton: CpvtonStage, models: ModelDir,
                 jppnet_graph: str = "jppnet", store: PersonStore | None = None, preview_session=None):
        self.parse_stage = parse_stage
        # (exact session) -> the preview's session, opened on the first preview only (default: the same).
        self._preview_session = preview_session or (lambda exact: exact)
        self._preview_stage: ParseStage | None = None
        self._preview_lock = threading.Lock()
        self.cpvton = cpvton
        self.models = models
        self.jppnet_graph = jppnet_graph  # the manifest entry JPP-Net runs from
        self.store = store
        # What makes JPP-Net's answer for a photo: the graph's bytes and how it is run.
        self.parser_key = (f"{models.entry(jppnet_graph).sha256 or ''}|{parse_stage.identity()}"
                           if parse_stage is not None else "")

    @classmethod
    def from_dir(cls, path: str | Path = "models_onnx", provider: str = "auto", threads: int = 0,
                 scales=(1.0, 0.75, 1.25), mirror: bool = True, precision: str = "fp32",
                 store: PersonStore | None = None, load_jppnet: bool = True) -> "TryOn":
        """`PipelineSettings(...).build()` by keywords, with an open store (or none)."""
        settings = PipelineSettings(str(path), provider, threads, tuple(scales), mirror, precision)
        return settings.build(load_jppnet=load_jppnet, store=store)

    def graphs(self) -> dict[str, "StageGraph"]:
        """What runs each stage (parse, gmm_person, gmm, tom). A stage that is not an ONNX
        session (the reference pipeline's TensorFlow parse) is left out."""
        cpvton = self.cpvton
        names = iter(cpvton.graphs)  # one per session the CP-VTON stage holds, in this order
        sessions = [(stage, next(names, None), session) for stage, session in
                    (("gmm_person", cpvton.gmm_person), ("gmm", cpvton.gmm), ("tom", cpvton.tom))
                    if session is not None]
        if isinstance(self.parse_stage, ParseStage):
            sessions.insert(0, ("parse", self.jppnet_graph, self.parse_stage.session))
        graphs = {}
        for stage, graph, session in sessions:
            entry = self.models.entry(graph) if graph else None
            graphs[stage] = StageGraph(graph, entry and entry.file, (entry and entry.precision) or "fp32",
                                       providers_in_use(session))
        return graphs

    def describe(self) -> dict:
        """What this pipeline runs, as /healthz, `tryon info` and the benchmark records say it."""
        graphs = self.graphs()
        facts = {"synthetic": self.synthetic, "family": self.models.family,
                 "providers": list(dict.fromkeys(p for graph in graphs.values() for p in graph.providers)),
                 "stages": {stage: asdict(graph) for stage, graph in graphs.items()}}
        if "parse" in graphs:
            facts["jppnet_graph"] = graphs["parse"].file
        return facts

    @property
    def synthetic(self) -> bool:
        return any(self.models.synthetic(name) for name in ("jppnet", "gmm", "tom"))

    def parse(self, person, options: ParseOptions | None = None, *, labels=None, keypoints=None,
              preview: bool = False, **flags) -> ParsedPerson:
        """Parse a person photo (path, bytes or array) once, to dress it in any number of
        garments. Pass `labels` (HxW LIP) and `keypoints` (16x2 LIP x/y) to skip JPP-Net.
        preview=True: a quick parse (quality "preview", PREVIEW_SIDE) under the id of the exact
        parse, which a later parse without preview makes and stores in its place."""
        return self.parse_call(person, options, labels=labels, keypoints=keypoints, preview=preview, **flags).parsed

    def parse_call(self, person, options: ParseOptions | None = None, *, labels=None, keypoints=None,
                   preview: bool = False, **flags) -> ParseCall:
        """`parse`, with this call's timings and whether the person came from the store."""
        return self._parse(person, replace(options or ParseOptions(), **flags), labels, keypoints, preview=preview)

    def _parse(self, person, options: ParseOptions, labels, keypoints, seen: dict | None = None,
               preview: bool = False) -> ParseCall:
        timer = Timer()
        with timer("total"):
            with timer("decode"):
                rgb = load_rgb(person, "person photo", jpeg_dct=options.jpeg_dct)
            given = _given_parse(labels, keypoints, rgb.shape[:2])
            pid = person_id(rgb, options, given_parse_key(*given) if given else self.parser_key)
            if seen is not None and pid in seen:
                return ParseCall(seen[pid], timer.ms)
            if self.store is not None:
                with timer("store"):
                    found = self.store.get(pid)
                if found is not None and (preview or found.quality == "full"):  # never a preview for the exact
                    return ParseCall(found, timer.ms, from_store=True)
            parsed = self._parse_photo(pid, rgb, options, given, timer, preview)
            if self.store is not None:
                with timer("store"):
                    self.store.put(parsed)
        if seen is not None:
            seen[pid] = parsed
        return ParseCall(parsed, timer.ms)

    def _parse_photo(self, pid: str, rgb: np.ndarray, options: ParseOptions, given, timer: Timer,
                     preview: bool) -> ParsedPerson:
        preview = preview and not given
        if options.need_bright:
            with timer("brightness"):
                rgb = brightness.enhance(rgb)
        if given:
            labels, keypoints, confidence = (*given, 1.0)
        elif self.parse_stage is None:
            raise InputError("this pipeline was loaded to dress only (load_jppnet=False): it parses no photo "
                             "without given labels and keypoints")
        else:
            result = (self.preview_stage() if preview else self.parse_stage).run(rgb)
            timer.add("parse", result.timings_ms)
            labels, keypoints, confidence = result.labels, result.keypoints, result.confidence
        reason = ""
        with timer("crop"):
            try:
                if options.need_pre:
                    framed = crop_person(rgb, labels, keypoints, pose_box(keypoints, *labels.shape))
                else:
                    framed = resize_person(rgb, labels, keypoints)
            except CannotFrame as exc:
                framed = resize_person(rgb, labels, keypoints)
                reason = str(exc)
        if not reason and options.check_dirty and crossed_arms(framed[2]):
            reason = "crossed arms: a wrist lies inside the torso (check_dirty)"
        return ParsedPerson(pid, *framed, 0.0 if reason else confidence, reason, options,
                            "preview" if preview else "full")

    def preview_stage(self) -> ParseStage:
        """JPP-Net as a preview runs it (opened on the first preview)."""
        with self._preview_lock:
            if self._preview_stage is None:
                session = self._preview_session(self.parse_stage.session)
                self._preview_stage = ParseStage(session, (PREVIEW_SIDE / BASE_SIZE,), mirror=False)
            return self._preview_stage

    def dress(self, parsed: ParsedPerson, garments, options: DressOptions | None = None, *,
              intermediates: bool = False, names: list[str] | None = None, **flags) -> list[GarmentOutcome]:
        """Dress a parsed person in each garment (paths, bytes or arrays; one or a list). One
        outcome per garment, in order: its TryOnResult, or the TryonError that refuses it alone
        (it cannot be read or decoded). `names`: what the errors call each garment."""
        if isinstance(garments, (str, Path, bytes, bytearray, np.ndarray)):
            garments = [garments]
        options = replace(options or DressOptions(), **flags)
        return self.dress_pairs([(parsed, g) for g in garments], options, intermediates, names)

    def dress_pairs(self, pairs, options: DressOptions, intermediates: bool = False,
                    names: list[str] | None = None) -> list[GarmentOutcome]:
        """(parsed person, garment) pairs -> one outcome each (as `dress`), batched whoever's
        persons they are. A garment may be a TryonError already: then that is its outcome."""
        outcomes: list[GarmentOutcome | None] = [None] * len(pairs)
        timers, cloths, ready = {}, {}, []
        for i, (parsed, garment) in enumerate(pairs):
            timer = Timer()
            with timer("total"), timer("decode"):
                cloth = _garment_rgb(garment, names[i] if names else "garment photo")
            if isinstance(cloth, TryonError):
                outcomes[i] = cloth
            elif parsed.refused:
                extras = _extras(parsed, None) if intermediates else {}
                outcomes[i] = TryOnResult(parsed.person, 0.0, timer.ms, parsed.reason, extras)
            else:
                timers[i], cloths[i] = timer, cloth
                ready.append(i)
        for start in range(0, len(ready), DRESS_BATCH):
            chunk = ready[start:start + DRESS_BATCH]
            persons = [pairs[i][0] for i in chunk]
            batch = Timer()
            with batch("cpvton"):
                outs = self.cpvton.run_batch([p.person for p in persons], [cloths[i] for i in chunk],
                                             [p.labels for p in persons], [p.keypoints for p in persons],
                                             warp_jpeg=options.warp_jpeg)
            for i, parsed, out in zip(chunk, persons, outs):
                timer, image = timers[i], out.image
                timer.add("cpvton", out.timings_ms)
                timer.ms["total"] += batch.ms["cpvton"] / len(chunk)
                if options.keep_back:
                    with timer("total"), timer("keep_back"):
                        image = keep_background(parsed.person, out.image, parsed.labels, options.need_dilate)
                outcomes[i] = TryOnResult(image, parsed.confidence, timer.ms, "",
                                          _extras(parsed, out) if intermediates else {})
        return outcomes

    def predict(self, person, cloth, need_pre: bool = True, need_bright: bool = False,
                keep_back: bool = False, need_dilate: bool = False, check_dirty: bool = False,
                labels: np.ndarray | None = None, keypoints: np.ndarray | None = None,
                intermediates: bool = False, jpeg_dct: str = "accurate", warp_jpeg: bool = False) -> TryOnResult:
        """The seed's predict() with its bugs fixed: parse, then dress in one garment."""
        parse_options, dress_options = split_flags(need_pre, need_bright, keep_back, need_dilate, check_dirty)
        return self.predict_batch([(person, cloth)], replace(parse_options, jpeg_dct=jpeg_dct),
                                  replace(dress_options, warp_jpeg=warp_jpeg), [(labels, keypoints)], intermediates)[0]

    def predict_batch(self, pairs, parse_options: ParseOptions | None = None,
                      dress_options: DressOptions | None = None, parses=None,
                      intermediates: bool = False) -> list[TryOnResult]:
        """Many (person, cloth) pairs, each distinct person parsed once; `parses`: (labels,
        keypoints) per pair. Garments are read first, so a bad one fails before any JPP-Net work."""
        parse_options, dress_options = parse_options or ParseOptions(), dress_options or DressOptions()
        parses = parses or [(None, None)] * len(pairs)
        cloths = [load_rgb(cloth, "garment photo") for _, cloth in pairs]
        seen: dict[str, ParsedPerson] = {}  # one parse per photo in this call, store or not
        calls = [self._parse(person, parse_options, labels, keypoints, seen)
                 for (person, _), (labels, keypoints) in zip(pairs, parses)]
        dressed = self.dress_pairs([(call.parsed, cloth) for call, cloth in zip(calls, cloths)], dress_options,
                                   intermediates)
        for call, result in zip(calls, dressed):  # no TryonError: the garments were read above
            result.timings_ms = join_timings(call.timings_ms, result.timings_ms)
        return dressed


def _garment_rgb(garment, what: str) -> np.ndarray | TryonError:
    if isinstance(garment, TryonError):
        return garment
    try:
        return load_rgb(garment, what)
    except TryonError as exc:
        return exc
    except OSError as exc:  # a path that exists but cannot be read
        error = InputError(str(exc))
        error.__cause__ = exc
        return error


def _extras(parsed: ParsedPerson, out) -> dict[str, np.ndarray]:
    extras = {"person": parsed.person, "labels": parsed.labels, "keypoints": parsed.keypoints}
    if out is not None:
        extras.update(garment=out.garment, warped_cloth=out.warped_cloth, mask=out.mask, rendered=out.rendered)
    return extras


def join_timings(parse_ms: dict[str, float], dress_ms: dict[str, float]) -> dict[str, float]:
    """One request's timings: the parse's steps, then the dress's; shared names add up."""
    joined = dict(parse_ms)
    for name, ms in dress_ms.items():
        joined[name] = joined.get(name, 0.0) + ms
    joined["total"] = joined.pop("total")
    return joined


def _given_parse(labels, keypoints, shape):
    """A caller's own (labels, keypoints) checked against the photo, or None."""
    if (labels is None) != (keypoints is None):
        raise InputError("pass both labels and keypoints to skip JPP-Net, or neither")
    if labels is None:
        return None
    labels, keypoints = np.asarray(labels), np.asarray(keypoints)
    if labels.shape != shape:
        raise InputError(f"labels have shape {labels.shape}; the person photo is {shape[0]}x{shape[1]}")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 19:
        raise InputError("labels must be integers 0..19 (the LIP label set)")
    if keypoints.shape != (16, 2):
        raise InputError(f"keypoints must be 16 LIP joints as a (16, 2) x/y array, got {keypoints.shape}")
    if keypoints.dtype.kind not in "iuf" or not np.isfinite(keypoints).all():
        raise InputError("keypoints must be finite numbers (x, y in pixels of the person photo)")
    # Integer keypoints stay integers; fractional ones keep their fractions, so that the pose
    # map's rule (a joint counts when x > 1 and y > 1) sees the values the caller gave.
    return labels.astype(np.uint8), keypoints.astype(np.int64 if keypoints.dtype.kind in "iu" else np.float64)
