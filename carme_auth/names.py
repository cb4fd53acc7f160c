"""User names: normalized and validated BEFORE anything reaches the directory.

A login name is Unicode-normalized (NFKC), stripped and lower-cased, then must match the site's
pattern (by default a POSIX user name: what `useradd` accepts, and what sbatch will run as).
Names with LDAP filter metacharacters (`*`, `(`, `)`, `\\`, NUL) never match the default pattern;
filters escape every value anyway (`ldap_filter`), so a looser site pattern cannot widen a search.
"""

from __future__ import annotations

import re
import unicodedata

from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

POSIX_USERNAME_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}$"
MAX_LENGTH = 256  # refused before any other work, whatever the pattern


class UsernameError(ValueError):
    """The login name cannot be a user name; the message is safe to log (the name is shortened)."""


def normalize_username(raw: str) -> str:
    """NFKC, stripped, lower-case: `Alice ` and `ａｌｉｃｅ` are both `alice`."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def checked_username(raw, pattern: re.Pattern | str) -> str:
    """The normalized name, or UsernameError when it is empty, too long or does not match `pattern`."""
    if not isinstance(raw, str) or not raw:
        raise UsernameError("the user name is empty")
    if len(raw) > MAX_LENGTH:
        raise UsernameError(f"the user name is longer than {MAX_LENGTH} characters")
    name = normalize_username(raw)
    if not re.fullmatch(pattern, name):
        raise UsernameError(f"user name {shorten(name)} does not match the allowed pattern")
    return name


def shorten(value: str, limit: int = 40) -> str:
    """repr() of a value for a log line: quoted, control characters escaped, at most `limit` chars."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ldap_filter(template: str, **values: str) -> str:
    """`template` with each `{name}` replaced by its value escaped for an LDAP filter (RFC 4515)."""
    return template.format(**{key: escape_filter_chars(str(value)) for key, value in values.items()})


def ldap_dn(template: str, username: str) -> str:
    """A DN template (`uid={username},ou=people,...`) with the name escaped as an RDN value."""
    # ldap3 puts a backslash before NUL; RFC 4514 wants NUL as the hex pair \00
    escaped = escape_rdn(username).replace("\\\x00", "\x00").replace("\x00", "\\00")
    return template.format(username=escaped)
