"""Shapes of the codes the standard names things by (DOMAIN.md)."""

from __future__ import annotations

import re

# An agency (cơ quan, đơn vị) in the national catalogue: NNN.NN.NN.XNN, e.g. 000.00.04.H62.
AGENCY_CODE = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$")
