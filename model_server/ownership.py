"""The own-model rule: a server loads, after boot, only versions of its own registered model.

Loading an MLflow model runs its code (a pyfunc's `load_context`, pickles). A swap
request may therefore only name `models:/<own>/<version>` or `models:/<own>@<alias>`,
where `<own>` is the registered model the server was started for (`MODEL_URI`'s name,
else `ALIASFLOW_MODEL_NAME`), resolved through the server's own tracking URI. Paths,
`file://`, `runs:/`, `http(s)://`, other model names and anything that does not match
the two forms exactly (`models:/own/../x`, a trailing newline, `latest`) are refused
before anything is downloaded or imported. docs/security.md says what this does not
cover: a malicious version of the server's own model.
"""

from __future__ import annotations

import re

from model_server.errors import ForeignModelError
from model_server.settings import ServerSettings

# Exactly the two forms, ASCII digits and alias characters only; `fullmatch`, so no
# trailing newline or suffix slips through as `$` would let it.
_OWN_FORMS = re.compile(
    r"models:/(?P<name>[^/@\s]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[A-Za-z0-9_-]+))"
)


def registered_name(model_uri: str) -> str | None:
    """The registered model `model_uri` names, when it is one of the two allowed forms."""
    match = _OWN_FORMS.fullmatch(model_uri)
    return match["name"] if match else None


def own_model(settings: ServerSettings) -> str | None:
    """The registered model this server serves: `MODEL_URI`'s, else `ALIASFLOW_MODEL_NAME`
    (a baked directory); None when neither names one, and then no swap is allowed."""
    return registered_name(settings.model_uri) or settings.model_name


def check_own_model(own: str | None, model_uri: str) -> None:
    """Raise `ForeignModelError` (403) unless `model_uri` is a version or alias of `own`."""
    if own is None:
        raise ForeignModelError(
            f"refused to load {model_uri!r}: this server was not started for a registered "
            "model (MODEL_URI is not models:/<name>/...), so it accepts no swaps"
        )
    if registered_name(model_uri) != own:
        raise ForeignModelError(
            f"refused to load {model_uri!r}: this server loads only its own registered "
            f"model, as models:/{own}/<version> or models:/{own}@<alias>"
        )
