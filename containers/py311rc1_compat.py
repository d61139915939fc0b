"""Imported at start-up by the image's venv (py311rc1_compat.pth): compatibility for Ubuntu
22.04's python3.11, which is 3.11.0rc1. (A sitecustomize.py would be shadowed by Ubuntu's own.)

3.11.0rc1 predates sys.get_int_max_str_digits / sys.set_int_max_str_digits (added in 3.11.0rc2
for CVE-2020-10735); torch._dynamo, which tensordict and torchrl import, wraps them at import
time and fails without them. rc1 has no int/str conversion limit, which these report (0 means
"no limit"). On any later interpreter the functions exist and this file does nothing.
"""

import sys

if not hasattr(sys, "get_int_max_str_digits"):

    def _get_int_max_str_digits() -> int:
        return 0

    def _set_int_max_str_digits(maxdigits: int) -> None:
        if maxdigits != 0:
            raise ValueError("this interpreter (3.11.0rc1) has no int/str digit limit to set")

    sys.get_int_max_str_digits = _get_int_max_str_digits
    sys.set_int_max_str_digits = _set_int_max_str_digits
