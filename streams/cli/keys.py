"""`metasup keys new|list|supervisor`: operator signing keys in the keyring file
{actor: hexsecret}, and the supervisor's Ed25519 key pair."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import orjson

from streams.fleet.commands import load_keyring, new_key
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import write_key_pair

# Characters that would break the inline `actor:hexsecret,...` form of METASUP_OPERATOR_KEYS.
_FORBIDDEN_IN_ACTOR = frozenset(":,") | frozenset(" \t\r\n")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "keys",
        help="create operator signing keys (kill/revive/policy set) or the supervisor key",
        description=(
            "Operator keys sign kill/revive commands (HMAC-SHA256). They live in the keyring "
            "file METASUP_OPERATOR_KEYS_FILE, by default <METASUP_DATA_DIR>/operator-keys.json, "
            "a JSON object {actor: hexsecret} readable only by you (mode 600). Workers read "
            "the same file, or METASUP_OPERATOR_KEYS='actor:hexsecret,...' when that is set."
        ),
    )
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new = actions.add_parser(
        "new",
        help="generate a key for an actor and add it to the keyring file",
        description="Generate a fresh 32-byte secret for ACTOR and add it to the keyring file.",
    )
    new.add_argument(
        "--actor",
        default=default_actor(),
        help="who signs with this key (default: $USER, else 'operator'; now %(default)r)",
    )
    new.add_argument(
        "--force", action="store_true", help="replace the key of an actor that already has one"
    )
    new.set_defaults(run=run_new)
    listing = actions.add_parser("list", help="list the actors that have a key (never secrets)")
    listing.set_defaults(run=run_list)
    supervisor = actions.add_parser(
        "supervisor",
        help="create the supervisor's Ed25519 key pair (signs every fact on kills and policy)",
        description=(
            "Generate the supervisor's Ed25519 key pair. The private key (default "
            "<METASUP_DATA_DIR>/supervisor.key, mode 600; METASUP_SUPERVISOR_KEY_FILE) stays "
            "where the supervisor runs and signs every fact it writes to `kills` and "
            "`policy`. The public key (<METASUP_DATA_DIR>/supervisor.pub; "
            "METASUP_SUPERVISOR_PUBLIC_KEY_FILE) is what workers, SDK guards and the CLI "
            "verify those facts with: copy it to wherever they run. `metasup up` creates "
            "the pair when it is missing."
        ),
    )
    supervisor.add_argument(
        "--force",
        action="store_true",
        help="replace an existing key pair (facts signed with the old key stop verifying)",
    )
    supervisor.set_defaults(run=run_supervisor)


def default_actor() -> str:
    return os.environ.get("USER") or "operator"


def keyring_file(settings: Settings) -> Path:
    """The keyring file `keys new` writes: the one workers read when no inline keys are set."""
    return settings.operator_keys_file or settings.data_dir / "operator-keys.json"


def check_actor(actor: str) -> str | None:
    """Why `actor` cannot name a key, or None when it can."""
    if not actor:
        return "the actor name is empty"
    if any(char in _FORBIDDEN_IN_ACTOR for char in actor):
        return f"actor {actor!r} must not contain ':', ',' or whitespace"
    return None


def read_keyring_file(path: Path) -> dict[str, str]:
    """The {actor: hexsecret} object in `path`; empty when the file does not exist."""
    if not path.exists():
        return {}
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"keyring file {path} must hold a JSON object {{actor: hexsecret}}")
    return {str(actor): secret for actor, secret in data.items()}


def write_keyring_file(path: Path, keyring: dict[str, str]) -> None:
    """Replace `path` atomically with `keyring`, readable and writable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(orjson.dumps(keyring, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            handle.write(b"\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    path.chmod(0o600)


def run_new(args: argparse.Namespace, settings: Settings) -> int:
    actor: str = args.actor.strip()
    problem = check_actor(actor)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    path = keyring_file(settings)
    try:
        keyring = read_keyring_file(path)
    except (ValueError, orjson.JSONDecodeError) as error:
        print(f"error: cannot read the keyring file {path}: {error}", file=sys.stderr)
        return 1
    if actor in keyring and not args.force:
        print(
            f"error: actor {actor!r} already has a key in {path}; "
            "pass --force to replace it (commands signed with the old key stop verifying)",
            file=sys.stderr,
        )
        return 1
    replaced = actor in keyring
    keyring[actor] = new_key()
    write_keyring_file(path, keyring)
    print(
        f"{'replaced' if replaced else 'created'} the key of actor {actor!r} in {path} (mode 600)"
    )
    print()
    print("Sign commands with it:")
    print(f"  METASUP_OPERATOR_ACTOR={actor} metasup kill AGENT --reason '...'")
    print(f"  metasup kill AGENT --reason '...' --actor {actor}")
    print("(--actor may be left out while the keyring holds a single actor)")
    print()
    print(
        "The supervisor verifies signatures with the same keyring: workers read this file\n"
        "(METASUP_OPERATOR_KEYS_FILE, default <METASUP_DATA_DIR>/operator-keys.json), or\n"
        "METASUP_OPERATOR_KEYS='actor:hexsecret,...' when that is set.\n"
        "Workers load keys at start: restart a running stack (`metasup up`) to use a new key."
    )
    if settings.operator_keys is not None:
        print(
            "warning: METASUP_OPERATOR_KEYS is set, so workers and `metasup kill` use it and "
            "ignore this file; add the key there or unset it",
            file=sys.stderr,
        )
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.keyring_source()
    where = (
        "METASUP_OPERATOR_KEYS"
        if settings.operator_keys is not None
        else str(keyring_file(settings))
    )
    try:
        keyring = load_keyring(source)
    except (ValueError, orjson.JSONDecodeError) as error:
        print(f"error: cannot read the keyring ({where}): {error}", file=sys.stderr)
        return 1
    if not keyring:
        print(f"no operator keys ({where}); run `metasup keys new` to create one")
        return 0
    print(f"operator keys from {where}:")
    for actor in sorted(keyring):
        print(f"  {actor}")
    return 0


def run_supervisor(args: argparse.Namespace, settings: Settings) -> int:
    private_path = settings.supervisor_key_path()
    public_path = settings.supervisor_public_key_path()
    if private_path.exists() and not args.force:
        print(
            f"error: the supervisor already has a key at {private_path} (public key "
            f"{public_path}); pass --force to replace it (every fact signed with the old "
            "key then reads as forged: start from a fresh data dir)",
            file=sys.stderr,
        )
        return 1
    write_key_pair(private_path, public_path, replace=args.force)
    print("created the supervisor's Ed25519 key pair:")
    print(f"  private {private_path} (mode 600: only where the supervisor runs)")
    print(f"  public  {public_path} (copy it to every reader: SDK guards, the CLI elsewhere)")
    return 0
