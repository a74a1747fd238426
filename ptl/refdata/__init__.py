"""Reference data: IMD 2019 by LSOA, postcode → LSOA (ONS NSPL/ONSPD), ODS organisations.

Users download current releases themselves (`ptl refdata load imd|postcodes|ods FILE`); the
product ships no copies.
"""
