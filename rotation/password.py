"""New passwords, generated locally with ``secrets`` under AWS's GetRandomPassword policy.

Generating locally saves a GetRandomPassword call per rotation and keeps the new password out of
any API response.
"""

from __future__ import annotations

import secrets
import string

from rotation import _redact
from rotation.config import PasswordPolicy

# GetRandomPassword's punctuation set.
PUNCTUATION = string.punctuation


def character_classes(policy: PasswordPolicy) -> list[str]:
    """The non-empty character classes the policy allows, each minus excluded characters."""
    groups = []
    if not policy.exclude_lowercase:
        groups.append(string.ascii_lowercase)
    if not policy.exclude_uppercase:
        groups.append(string.ascii_uppercase)
    if not policy.exclude_numbers:
        groups.append(string.digits)
    if not policy.exclude_punctuation:
        groups.append(PUNCTUATION)
    excluded = set(policy.exclude_characters)
    cleaned = ("".join(c for c in group if c not in excluded) for group in groups)
    return [group for group in cleaned if group]


def generate_password(policy: PasswordPolicy) -> str:
    classes = character_classes(policy)
    alphabet = "".join(classes)
    chars = [secrets.choice(alphabet) for _ in range(policy.length)]
    if policy.require_each_included_type:
        # Put one character of each class at distinct random positions.
        positions = list(range(policy.length))
        for group in classes:
            index = positions.pop(secrets.randbelow(len(positions)))
            chars[index] = secrets.choice(group)
    password = "".join(chars)
    _redact.register(password)
    return password
