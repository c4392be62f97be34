"""The example pair shipped in runtime/assets (see its README for their licences)."""
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLE_PERSON = ASSETS / "person_astronaut.jpg"
EXAMPLE_GARMENT = ASSETS / "garment_tshirt.png"
