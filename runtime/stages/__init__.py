"""The steps of a try-on, each beside its pre- and post-processing: JPP-Net's parse, CP-VTON's
GMM and TOM, and the seed's host-side rules (brightness, crop, crossed arms, keep_back)."""
