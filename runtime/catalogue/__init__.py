"""`tryon catalogue`: every person in every garment, resumable, here or on a Ray cluster."""
