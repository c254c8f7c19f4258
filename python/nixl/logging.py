"""nixl.logging: NIXL's logging helpers. Loggers live under "nixl";
NIXL_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; NIXL's WARN and TRACE too)
sets the level of the "nixl" logger once, at the first get_logger()."""

import logging
import os

_configured = False
_ALIASES = {"WARN": "WARNING", "TRACE": "DEBUG", "FATAL": "CRITICAL"}


def set_log_level_by_env(nixl_logger: logging.Logger) -> None:
    """Sets nixl_logger's level from NIXL_LOG_LEVEL, when set."""
    value = os.getenv("NIXL_LOG_LEVEL")
    if not value:
        return
    name = _ALIASES.get(value.upper(), value.upper())
    level = getattr(logging, name, None)
    if not isinstance(level, int):
        nixl_logger.warning("Invalid NIXL_LOG_LEVEL value '%s'; using the "
                            "default.", value)
        return
    nixl_logger.setLevel(level)


def setup_logging() -> None:
    """Applies NIXL_LOG_LEVEL to the "nixl" logger (once)."""
    global _configured
    if _configured:
        return
    set_log_level_by_env(logging.getLogger("nixl"))
    _configured = True


def get_logger(name: str) -> logging.Logger:
    """The logger "nixl.<name>" ("_api" -> "nixl.api")."""
    setup_logging()
    name = name.rsplit(".", 1)[-1] if name.startswith("nixl.") else name
    return logging.getLogger("nixl." + name.lstrip("_"))
