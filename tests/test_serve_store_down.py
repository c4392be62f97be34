"""A person store that cannot be reached is not a person that is unknown (issue 22/23): a
request by person_id answers 503 with Retry-After while the store is down, 404 only for a
person the store does not hold, and a photo still works."""
import warnings

from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.store import MemoryStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


class FlakyStore(MemoryStore):
    """Fails its reads as a store whose server went away does (the outage logic of every store)."""
    down = False

    def _read(self, person_id):
        if self.down:
            self._failed(ConnectionError("the server went away"))
            return None
        self._recovered()
        return super()._read(person_id)


def test_a_store_that_is_down_answers_503_not_404(tiny_models_dir):
    store = FlakyStore()
    store.retry_s = 7
    app = create_app(TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False), store=store)
    with TestClient(app, base_url="http://localhost") as client:
        created = client.post("/v1/persons", files={"person": ("p.png", EXAMPLE_PERSON.read_bytes())},
                              data={"need_pre": "false"})
        person_id = created.json()["person_id"]
        store.down = True
        refused = client.get(f"/v1/persons/{person_id}")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7", refused.text
        assert person_id in refused.json()["detail"] and "cannot be reached" in refused.json()["detail"]
        by_photo = client.post("/v1/tryon", files={"person": ("p.png", EXAMPLE_PERSON.read_bytes()),
                                                   "cloth": ("c.jpg", EXAMPLE_GARMENT.read_bytes())})
        assert by_photo.status_code == 200, by_photo.text
        store.down = False
        assert client.get(f"/v1/persons/{person_id}").status_code == 200
        assert client.get(f"/v1/persons/{'0' * 32}").status_code == 404  # up, and not holding it
