"""Calibration: scipy fits of raw measurements and the versioned accelerator profile.

    from accelcal.calibrate.profile import Profile
    p = Profile.load("profiles/datasheet/h100-sxm.yaml")
    p.gemm_time_s(4096, 4096, 4096, "bf16")

Modules: ``profile`` (schema, strict loader, query API; no torch), ``fit``
(raw tables -> Profile), ``fit_gemm``, ``fit_alpha_beta``, ``fit_attention``,
``quality``, ``compare``, ``show``, ``plot``, ``export``, ``synthetic``
(known-parameter test data), ``cli``.  Importing this package imports nothing.
"""
