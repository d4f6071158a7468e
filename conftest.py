"""Test-suite wide settings.

Property tests run derandomised with no example database, so CI and every developer see the same
examples and a green run is reproducible; set HYPOTHESIS_PROFILE=explore to search at random.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
