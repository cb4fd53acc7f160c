"""Rules for an image reference: the site rule and the stricter rule for user-defined entries (pure).

The site rule is Carme's one definition of a valid image reference (the spawner's options use
it too): an absolute path ending in `.sif` or a `docker://`, `oras://` or `library://` URI.

User-defined entries must also pass :func:`check_user_image_reference`: the scheme must be one
the site allows, the reference must start with an allowed prefix, and `..` or shell
metacharacters are refused with a message naming the character. `{username}` in a prefix
(e.g. "/home/{username}/images/") stands for the entry's owner. :class:`UserEntryRules` holds
the site's schemes and prefixes: the store checks them on add, the loader at every load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

IMAGE_PATH = re.compile(r"/[A-Za-z0-9_./+-]*\.sif")
IMAGE_URI = re.compile(r"(docker|oras|library)://[A-Za-z0-9_./:@+-]+")
MAX_IMAGE_REFERENCE = 512

# "file" stands for an absolute .sif path; the others are URI schemes
IMAGE_SCHEMES = ("file", "docker", "oras", "library")
SHELL_METACHARACTERS = "$;|&`()<>\n\r\\'\"*?[]{}~!# \t"
_NONE_ALLOWED = "none (the site allows no user-defined images)"
OWNER_PLACEHOLDER = "{username}"  # in a prefix: the entry's owner
_CHARACTER_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space"}


class ImageReferenceError(ValueError):
    """An image reference broke a rule; str() says which."""


def image_scheme(ref: str) -> str:
    """The scheme of a reference: "docker", "oras", "library", or "file" for a path."""
    head, sep, _ = ref.partition("://")
    return head if sep else "file"


def check_image_reference(ref: object) -> str:
    """Return `ref` if it is an absolute .sif path or a docker/oras/library URI; else ImageReferenceError."""
    if not isinstance(ref, str):
        raise ImageReferenceError(f"must be a string, got a value of type {type(ref).__name__}")
    if len(ref) > MAX_IMAGE_REFERENCE:
        raise ImageReferenceError(f"must be at most {MAX_IMAGE_REFERENCE} characters, got {len(ref)}")
    if IMAGE_URI.fullmatch(ref) or (IMAGE_PATH.fullmatch(ref) and ".." not in ref.split("/")):
        return ref
    raise ImageReferenceError(
        "must be an absolute path ending in .sif (characters A-Za-z0-9_./+-, no '..')"
        " or a docker://, oras:// or library:// URI (characters A-Za-z0-9_./:@+-)"
        f"; got {ref[:60]!r}"
    )


def check_user_image_reference(ref: object, allowed_schemes: Iterable[str],
                               allowed_prefixes: Iterable[str], *, owner: str | None = None) -> str:
    """Return `ref` if a user may add it: site rule, allowed scheme and prefix, no `..`, no metacharacters.

    `allowed_schemes` is a subset of IMAGE_SCHEMES ("file" = absolute .sif path). A prefix matches
    at a boundary: "/opt/images" allows "/opt/images/a.sif" but not "/opt/images-x/a.sif"; a
    prefix ending in "/" or "://" matches any continuation ("docker://" allows every docker image).
    `{username}` in a prefix is the entry's `owner` (a checked POSIX user name); without an owner
    such a prefix matches nothing.
    """
    if not isinstance(ref, str):
        raise ImageReferenceError(f"must be a string, got a value of type {type(ref).__name__}")
    for char in ref:
        if char in SHELL_METACHARACTERS or not char.isprintable():
            rule = "shell metacharacters and control characters are refused"
            raise ImageReferenceError(f"must not contain {_name(char)} ({rule})")
    if ".." in ref:
        raise ImageReferenceError("must not contain '..' (no parent-directory steps in user-defined images)")
    schemes = tuple(allowed_schemes)
    unknown = [s for s in schemes if s not in IMAGE_SCHEMES]
    if unknown:
        raise ValueError(f"allowed_schemes: {unknown} are not among {', '.join(IMAGE_SCHEMES)}")
    scheme = image_scheme(ref)
    if scheme not in schemes:
        allowed = ", ".join(_scheme_text(s) for s in schemes) or _NONE_ALLOWED
        what = _scheme_text(scheme)
        raise ImageReferenceError(f"{what} is not allowed for user-defined images; allowed: {allowed}")
    prefixes = owner_prefixes(allowed_prefixes, owner)
    if not any(_starts_at_boundary(ref, prefix) for prefix in prefixes):
        allowed = ", ".join(prefixes) or _NONE_ALLOWED
        raise ImageReferenceError(f"must start with one of the allowed prefixes: {allowed}")
    return check_image_reference(ref)


def owner_prefixes(prefixes: Iterable[str], owner: str | None) -> tuple[str, ...]:
    """`prefixes` with `{username}` filled in with `owner` (left as it is, so matching nothing, without one)."""
    if owner is None:
        return tuple(prefixes)
    if "/" in owner or owner in ("", ".", ".."):
        raise ValueError(f"owner must be a POSIX user name, got {owner!r}")
    return tuple(prefix.replace(OWNER_PLACEHOLDER, owner) for prefix in prefixes)


@dataclass(frozen=True)
class UserEntryRules:
    """The site's rules for the images of user-defined entries, as they are today.

    `schemes` ⊆ IMAGE_SCHEMES ("file" = absolute .sif path); `prefixes` as for
    :func:`check_user_image_reference` (`{username}` = the entry's owner). Give them to the loader
    (`load_catalog(..., user_rules=...)`, `CatalogSource(..., user_rules=...)`) so stored entries
    that today's rules refuse are left out.
    """

    schemes: tuple[str, ...]
    prefixes: tuple[str, ...]

    def __post_init__(self):
        for name in ("schemes", "prefixes"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name}: must be a list of strings, got {value!r:.80}")
            object.__setattr__(self, name, tuple(value))
        unknown = [s for s in self.schemes if s not in IMAGE_SCHEMES]
        if unknown:
            raise ValueError(f"schemes: {unknown} are not among {', '.join(IMAGE_SCHEMES)}")

    def check(self, ref: object, owner: str | None) -> str:
        """Return `ref` if `owner` may use it in a user-defined entry today; else ImageReferenceError."""
        return check_user_image_reference(ref, self.schemes, self.prefixes, owner=owner)


def _starts_at_boundary(ref: str, prefix: str) -> bool:
    if not prefix or not ref.startswith(prefix):
        return False
    if ref == prefix or prefix.endswith("/"):
        return True
    return ref[len(prefix)] in "/:@"


def _scheme_text(scheme: str) -> str:
    return "an absolute .sif path" if scheme == "file" else f"{scheme}://"


def _name(char: str) -> str:
    if char in _CHARACTER_NAMES:
        return _CHARACTER_NAMES[char]
    return repr(char) if char.isprintable() else f"control character {ord(char):#04x}"
