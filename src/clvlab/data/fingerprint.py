"""A fingerprint of canonical transactions: the same rows give the same hash, in any order."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE


def fingerprint(transactions: pd.DataFrame) -> str:
    """SHA-256 of the canonical columns (``customer_id``, ``date``, ``amount`` when present),
    independent of row order and of any other column.

    Each row is hashed on its values (pandas' stable row hash), the row hashes are sorted and
    the sorted array is hashed, so reordering rows keeps the fingerprint and changing any value
    changes it.
    """
    columns = [c for c in (CUSTOMER_ID, DATE, AMOUNT) if c in transactions]
    frame = transactions[columns].copy()
    frame[CUSTOMER_ID] = frame[CUSTOMER_ID].astype("string")
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    digest = hashlib.sha256(",".join(columns).encode())
    digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()
